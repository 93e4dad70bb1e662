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
    """Looks a presented key up among stored digests in constant time.

    Every stored digest is compared with :func:`hmac.compare_digest`, with no
    early exit, so the time taken does not depend on which key matched or on
    how much of a digest matched.
    """

    def __init__(self, entries: Iterable[tuple[str, str, str]]) -> None:
        self._entries = [
            (bytes.fromhex(digest), Principal(id=key_id, tier=tier))
            for key_id, digest, tier in entries
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, presented_key: bytes | str) -> Principal | None:
        raw = presented_key.encode("utf-8") if isinstance(presented_key, str) else presented_key
        digest = hashlib.sha256(raw).digest()
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        return found
