"""The shared view's kept queries: one fixed-size record each, and where to look for them.

A kept query is 70 bytes: its sequence number, the second it arrived, a hash
of who sent it, the class it was answered (high bit: the answer was a silent
one), a digest of its exact bytes, and its fingerprint in float16. Records
live in a ring of ``size`` slots; ``TABLES`` hash tables of ``BUCKET`` slots
per row point at them by sequence number (locality-sensitive hashing on a
grid of cell ``2 * radius``: a query finds the earlier queries near it by
reading ``TABLES * BUCKET`` sequence numbers, not the whole view). A pointer
is valid while the ring slot still holds that sequence number: stale ones
are skipped, never cleaned.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..reference.sketch import DIMENSIONS

TABLES = 4
COORDINATES = DIMENSIONS // TABLES  # fingerprint coordinates hashed by each table
BUCKET = 16  # sequence numbers kept per hash-table row; a new one replaces slot seq % BUCKET
LOAD = 1.0  # hash-table slots per kept query (rounded up to a power of two rows)
SILENT = 0x8000  # flag in the answer: the query got a silent answer
CLASS = 0x7FFF  # the answer without its flag
NO_ANSWER = 0x7FFF

ENTRY = np.dtype(
    [
        ("seq", "<u4"),
        ("time", "<u4"),
        ("who", "<u4"),
        ("answer", "<u2"),
        ("digest", "<u8"),
        ("fingerprint", "<f2", (DIMENSIONS,)),
    ],
    align=False,
)
assert ENTRY.itemsize == 70  # the Redis scripts depend on it


def table_rows(size: int) -> int:
    """Rows per hash table (a power of two) for a view of ``size`` kept queries."""
    return max(1, 1 << int(np.ceil(np.log2(max(1.0, LOAD * size / BUCKET)))))


class CellHasher:
    """Which row of each hash table a fingerprint belongs to (cells of ``2 * radius``)."""

    def __init__(self, radius: float, rows: int) -> None:
        rng = np.random.default_rng(0xCE11)
        self.width = 2.0 * radius
        self.offsets = rng.random((TABLES, COORDINATES))
        self.multipliers = rng.integers(1, 2**62, size=(TABLES, COORDINATES), dtype=np.int64) | 1
        self.rows = rows

    def __call__(self, fingerprints: np.ndarray) -> np.ndarray:
        """(n, TABLES) row numbers."""
        grouped = np.asarray(fingerprints, dtype=np.float64).reshape(-1, TABLES, COORDINATES)
        cells = np.floor(grouped / self.width + self.offsets).astype(np.int64)
        with np.errstate(over="ignore"):
            mixed = (cells * self.multipliers).sum(axis=2)  # wraps: a hash, not a number
        mixed ^= mixed >> 29
        return np.asarray(mixed % self.rows, dtype=np.int64)


def digests(rows: np.ndarray) -> np.ndarray:
    """A stable 64-bit digest of each row's exact values (an exact repeat shares it)."""
    flat = np.ascontiguousarray(np.asarray(rows, dtype=np.float64).reshape(len(rows), -1))
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
            for row in flat
        ],
        dtype=np.uint64,
    )


def principal_hash(principal: str) -> int:
    """32 bits that tell principals apart in the view (not their identity)."""
    return int.from_bytes(hashlib.blake2b(principal.encode(), digest_size=4).digest(), "little")


def live(entries: np.ndarray, current: int, size: int, oldest: int) -> np.ndarray:
    """Which fetched records are still kept: in the ring's last ``size`` and not too old."""
    age = (np.uint32(current) - entries["seq"]).astype(np.uint32)  # modulo 2**32
    alive: np.ndarray = (entries["seq"] != 0) & (age < size) & (entries["time"] >= oldest)
    return alive
