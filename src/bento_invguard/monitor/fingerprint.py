"""Compact query fingerprints: a 64-bit SimHash for nearness, a digest for exact repeats.

SimHash (random-hyperplane LSH): each bit is the sign of one fixed random
projection of the standardised row, so rows a small step apart share almost
all bits, and the Hamming distance of two fingerprints tracks their angle.
"""

from __future__ import annotations

import hashlib

import numpy as np

BITS = 64
SEED = 0x1A7E5  # fixed: fingerprints must agree across workers and restarts


class Fingerprinter:
    """Maps rows of ``n_features`` values to uint64 SimHash fingerprints."""

    def __init__(self, n_features: int, center: np.ndarray, scale: np.ndarray) -> None:
        planes = np.random.default_rng(SEED).standard_normal((n_features, BITS))
        safe = np.where(scale > 0, scale, 1.0)
        self._weights = planes / safe[:, np.newaxis]
        self._offset = (center / safe) @ planes

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        flat = rows.reshape(rows.shape[0], -1).astype(np.float64, copy=False)
        bits = (flat @ self._weights - self._offset) > 0
        return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).ravel()


def row_digests(rows: np.ndarray) -> np.ndarray:
    """A stable 64-bit digest per row (exact repeats share it)."""
    flat = np.ascontiguousarray(rows.reshape(rows.shape[0], -1), dtype=np.float64)
    out = np.empty(flat.shape[0], dtype=np.uint64)
    for i, row in enumerate(flat):
        out[i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
    return out


def hamming(a: np.ndarray, b: np.uint64) -> np.ndarray:
    """Bit distance between each fingerprint in ``a`` and ``b``."""
    return np.bitwise_count(a ^ b)


def top_margin(scores: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 score per row (the distance to the decision boundary)."""
    if scores.shape[1] < 2:
        return np.full(scores.shape[0], np.inf)
    part = np.partition(scores, -2, axis=1)
    return part[:, -1] - part[:, -2]
