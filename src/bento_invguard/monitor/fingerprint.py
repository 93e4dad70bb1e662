"""Compact query fingerprints: a 64-bit SimHash for nearness, a digest for exact repeats.

SimHash (random-hyperplane LSH): each bit is the sign of one fixed random
projection of the standardised row, so rows a small step apart share almost
all bits, and the Hamming distance of two fingerprints tracks their angle.
"""

from __future__ import annotations

import hashlib
import math
import sys

import numpy as np

BITS = 64
SEED = 0x1A7E5  # fixed: fingerprints must agree across workers and restarts

# One row's 64 sign bits (bool bytes 0/1), last bit first, as "0"/"1" text: int(text, 2)
# is the little-endian packbits value as a native uint64, without numpy's per-call cost.
_BIT_TEXT = bytes.maketrans(b"\x00\x01", b"01")
_LITTLE = sys.byteorder == "little"
_HALF_ULP_OF_MAX = 2.0**970  # half the spacing of doubles just below the largest one


class Fingerprinter:
    """Maps rows of ``n_features`` values to uint64 SimHash fingerprints."""

    def __init__(self, n_features: int, center: np.ndarray, scale: np.ndarray) -> None:
        planes = np.random.default_rng(SEED).standard_normal((n_features, BITS))
        safe = np.where(scale > 0, scale, 1.0)
        self._weights = planes / safe[:, np.newaxis]
        self._offset = (center / safe) @ planes
        # Each bit is (p - offset > 0) for the row's projection p. With every offset finite
        # and below half an ulp of the largest double, p > offset is the same bit (in IEEE
        # arithmetic a difference of distinct doubles never rounds to 0) and the subtraction
        # could neither overflow nor meet inf - inf: no warning is lost by skipping it.
        self._compare = bool(np.all(np.abs(self._offset) < _HALF_ULP_OF_MAX))

    def _bits(self, flat: np.ndarray) -> np.ndarray:
        projected = flat @ self._weights
        if self._compare:
            bits: np.ndarray = projected > self._offset
            return bits
        bits = projected - self._offset > 0
        return bits

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        flat = rows.reshape(rows.shape[0], -1).astype(np.float64, copy=False)
        bits = self._bits(flat)
        return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).ravel()

    def one(self, flat: np.ndarray) -> int:
        """The fingerprint of one row, ``flat`` float64 of shape (1, n_features), as an int:
        ``int(self(flat)[0])``, cheaper."""
        bits = self._bits(flat)
        if _LITTLE and bits.shape == (1, BITS):
            return int(bits.tobytes()[::-1].translate(_BIT_TEXT), 2)
        return int(np.packbits(bits, axis=1, bitorder="little").view(np.uint64).ravel()[0])


def row_digests(rows: np.ndarray) -> np.ndarray:
    """A stable 64-bit digest per row (exact repeats share it)."""
    flat = np.ascontiguousarray(rows.reshape(rows.shape[0], -1), dtype=np.float64)
    out = np.empty(flat.shape[0], dtype=np.uint64)
    for i, row in enumerate(flat):
        out[i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
    return out


def row_digest(flat: np.ndarray) -> int:
    """The digest of one row, ``flat`` float64 of shape (1, n): ``int(row_digests(flat)[0])``."""
    return int.from_bytes(hashlib.blake2b(flat.tobytes(), digest_size=8).digest(), "little")


def hamming(a: np.ndarray, b: np.uint64 | int) -> np.ndarray:
    """Bit distance between each fingerprint in ``a`` and ``b``."""
    distances: np.ndarray = np.bitwise_count(a ^ b)
    return distances


def top_margin(scores: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 score per row (the distance to the decision boundary)."""
    if scores.shape[1] < 2:
        return np.full(scores.shape[0], np.inf)
    part = np.partition(scores, -2, axis=1)
    return part[:, -1] - part[:, -2]


def first_margin(scores: np.ndarray) -> float:
    """``float(top_margin(scores)[0])`` for float64 scores of shape (1, classes), cheaper."""
    if scores.shape[1] < 2:
        return float("inf")
    margin = _one_margin(scores)
    if margin is None:  # numpy's array subtraction, and its warnings, word for word
        part = np.partition(scores, -2, axis=1)
        return float((part[:, -1] - part[:, -2])[0])
    return margin


def _one_margin(scores: np.ndarray) -> float | None:
    """Top-1 minus top-2 of a one-row float64 array (two columns or more) in Python floats;
    None where only numpy's own answer is certain: a NaN (np.partition sorts it last), two
    zeros on top (which of 0.0 and -0.0 comes last decides the sign of the result) or a
    result that is not finite (numpy's warnings)."""
    values = scores[0].tolist()
    total = sum(values)
    if total != total:  # a NaN, or +inf with -inf
        return None
    values.sort()
    top, second = values[-1], values[-2]
    if top == 0.0 and second == 0.0:
        return None
    # IEEE subtraction: the same value numpy computes from the same two operands; numpy
    # also warns where the result is not finite (inf - inf, overflow): its path does that
    margin: float = top - second
    return margin if math.isfinite(margin) else None
