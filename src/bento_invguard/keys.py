"""API keys: digests, and the key ring that maps a presented key to a principal."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

KEY_PREFIX = "ig_"


def hash_key(key: str) -> str:
    """Return the SHA-256 hex digest to store in a policy for ``key``.

    >>> hash_key("demo")[:16]
    '2a97516c354b6884'
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    """A new random API key (256 bits, URL-safe)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    tier: str


class KeyRing:
    """Maps a presented key to its principal through the key's SHA-256 digest.

    The presented key is hashed; the first 8 bytes of its digest select the
    stored digests that share them (almost always none or one), and each of
    those is compared with the whole digest by :func:`hmac.compare_digest`.
    The comparison that decides is constant-time; the selection only reveals,
    through timing, whether some stored digest begins like the digest of a
    guess, which says nothing about any key (SHA-256 is preimage resistant).
    A miss compares against a decoy, so both paths do the same work, and the
    cost does not grow with the number of keys.
    """

    def __init__(self, entries: Iterable[tuple[str, str, str]]) -> None:
        self._by_prefix: dict[bytes, list[tuple[bytes, Principal]]] = {}
        self._count = 0
        for key_id, digest, tier in entries:
            raw = bytes.fromhex(digest)
            bucket = self._by_prefix.setdefault(raw[:_PREFIX], [])
            bucket[:] = [entry for entry in bucket if entry[0] != raw]  # a digest once
            bucket.append((raw, Principal(id=key_id, tier=tier)))
        self._count = sum(len(bucket) for bucket in self._by_prefix.values())

    def __len__(self) -> int:
        return self._count

    def lookup(self, presented_key: bytes | str) -> Principal | None:
        """The principal of ``presented_key``, or None (digests compared in constant time)."""
        raw = presented_key.encode("utf-8") if isinstance(presented_key, str) else presented_key
        digest = hashlib.sha256(raw).digest()
        found = None
        for stored, principal in self._by_prefix.get(digest[:_PREFIX], _MISS):
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


_PREFIX = 8
_MISS = [(b"\x00" * 32, None)]  # a miss compares against this decoy
