"""Keys: digests, lookup, and how keys are read from headers."""

from __future__ import annotations

import hashlib

import pytest

from bento_invguard import Unauthenticated, generate_key, hash_key
from bento_invguard.access import key_headers, presented_key
from bento_invguard.keys import KeyRing, Principal


def test_hash_key_is_sha256_hex() -> None:
    """hash_key is the plain SHA-256 hex digest of the UTF-8 key."""
    assert hashlib.sha256(b"abc").hexdigest() == hash_key("abc")


def test_generated_keys_are_unique_and_long() -> None:
    """Generated keys carry 256 random bits."""
    keys = {generate_key() for _ in range(100)}
    assert 100 == len(keys)
    assert all(len(k) >= 40 for k in keys)


def test_keyring_scales_to_many_keys() -> None:
    """With 10,000 keys every one is found and a miss maps to nobody (the lookup goes
    through the digest, so it does not scan the keys; cost is not timed here)."""
    ring = KeyRing([(f"k{i}", hash_key(f"key-{i}"), "public") for i in range(10_000)])
    assert Principal("k9999", "public") == ring.lookup("key-9999")
    assert ring.lookup("key-10000") is None


def test_keyring_finds_the_right_principal() -> None:
    """A stored key maps to its principal; anything else maps to nobody."""
    ring = KeyRing([("a", hash_key("ka"), "public"), ("b", hash_key("kb"), "trusted")])
    assert Principal("b", "trusted") == ring.lookup("kb")
    assert Principal("a", "public") == ring.lookup(b"ka")
    assert ring.lookup("kc") is None
    assert ring.lookup("") is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": b"Bearer k1"}, b"k1"),
        ({"authorization": b"bearer   k1  "}, b"k1"),
        ({"x-api-key": b"k2"}, b"k2"),
        ({"authorization": b"Bearer k3", "x-api-key": b"k3"}, b"k3"),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, bytes], expected: bytes | None) -> None:
    """Keys come from Authorization: Bearer or X-API-Key."""
    assert expected == presented_key(headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": b"Basic dXNlcjpwYXNz"},
        {"authorization": b"Bearer "},
        {"x-api-key": b"  "},
        {"authorization": b"Bearer a", "x-api-key": b"b"},
    ],
)
def test_ambiguous_or_malformed_keys_are_refused(headers: dict[str, bytes]) -> None:
    """A malformed header or two different keys is a 401, never a guess."""
    with pytest.raises(Unauthenticated):
        presented_key(headers)


def test_duplicate_key_headers_with_different_values_are_refused() -> None:
    """Sending X-API-Key twice with different keys gives no identity."""
    with pytest.raises(Unauthenticated, match="sent twice with different keys"):
        key_headers([(b"X-API-Key", b"one"), (b"x-api-key", b"two")])
    same = key_headers([(b"X-API-Key", b"one"), (b"x-api-key", b"one")])
    assert b"one" == presented_key(same)
