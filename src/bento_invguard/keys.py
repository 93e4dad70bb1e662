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

    The presented key is hashed and the digest looked up; the stored digest
    found is then compared with :func:`hmac.compare_digest`. What a timing
    side channel could reveal is about the digest of a guess, never about a
    stored key (SHA-256 is preimage resistant), and the cost stays constant
    however many keys there are.
    """

    def __init__(self, entries: Iterable[tuple[str, str, str]]) -> None:
        self._by_digest = {
            bytes.fromhex(digest): Principal(id=key_id, tier=tier)
            for key_id, digest, tier in entries
        }

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, presented_key: bytes | str) -> Principal | None:
        raw = presented_key.encode("utf-8") if isinstance(presented_key, str) else presented_key
        digest = hashlib.sha256(raw).digest()
        for stored, principal in self._candidates(digest):
            if hmac.compare_digest(stored, digest):
                return principal
        return None

    def _candidates(self, digest: bytes) -> list[tuple[bytes, Principal]]:
        principal = self._by_digest.get(digest)
        # Compare against a stored digest even on a miss, so both paths do the same work.
        return [(digest, principal)] if principal is not None else [(_DECOY, _NOBODY)]


_DECOY = b"\x00" * 32
_NOBODY = Principal(id="", tier="")
