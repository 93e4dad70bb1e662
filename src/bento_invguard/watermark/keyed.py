"""The keyed hash that chooses watermarked inputs and their labels.

An input row is hashed as its canonical bytes: float64, C order, ``-0.0``
as ``0.0``, after its shape, so that the same values choose the same way
whichever dtype or nesting a client sent. HMAC-SHA256 under the tier's
secret gives 32 bytes: the first 8 decide whether the row is watermarked
(below ``rate``), the next 8 which class other than the model's top-1 it is
answered with. Without the secret neither can be predicted, and the label is
uniform over the other classes, which is what makes the verifier's null
match probability ``1 / (classes - 1)`` an upper bound.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import numpy as np

_SCALE = float(2**64)


def canonical_bytes(row: np.ndarray) -> bytes:
    """The bytes a row is hashed as: its shape, then its values as float64.

    >>> canonical_bytes(np.array([1, 2])) == canonical_bytes(np.array([1.0, 2.0]))
    True
    """
    values = np.ascontiguousarray(row, dtype=np.float64) + 0.0  # -0.0 -> 0.0
    shape = struct.pack(f"<{values.ndim + 1}q", values.ndim, *values.shape)
    return shape + values.tobytes()


def row_digest(secret: bytes, row: np.ndarray) -> bytes:
    """HMAC-SHA256 of the row's canonical bytes under ``secret``."""
    return hmac.new(secret, canonical_bytes(row), hashlib.sha256).digest()


def is_chosen(digest: bytes, rate: float) -> bool:
    """True for a fraction ``rate`` of digests (the first 8 bytes as a uniform draw).

    >>> is_chosen(bytes(32), 0.005), is_chosen(b"\\xff" * 32, 0.005)
    (True, False)
    """
    return int.from_bytes(digest[:8], "big") < rate * _SCALE


def mark_label(digest: bytes, top: int, classes: int) -> int:
    """The class other than ``top`` that a chosen row is answered with.

    >>> mark_label(bytes(32), 0, 10), mark_label(bytes(32), 3, 10)
    (1, 0)
    """
    if classes < 2:
        raise ValueError("a watermark needs at least 2 classes")
    other = int.from_bytes(digest[8:16], "big") % (classes - 1)
    return other if other < top else other + 1


def marked_row(scores: np.ndarray, label: int) -> np.ndarray | None:
    """The row with the scores of its top-1 and of ``label`` swapped, so that ``label``
    is the strict maximum in every output mode; None when all scores are equal.

    >>> marked_row(np.array([0.1, 0.7, 0.2]), 2).tolist()
    [0.1, 0.2, 0.7]
    """
    row = np.array(scores, dtype=np.float64)
    top = int(np.argmax(row))
    high = row[top]
    if not np.isfinite(high) or np.all(row == high):
        return None
    row[top], row[label] = row[label], high
    if int(np.argmax(row)) != label:  # another class tied the top-1: break the tie
        row[label] = np.nextafter(high, np.inf)
    return row
