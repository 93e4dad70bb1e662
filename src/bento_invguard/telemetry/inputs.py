"""What telemetry may say about a model input without revealing it.

A digest identifies an input (equal inputs, equal digests) and summary
statistics describe it; neither lets a reader of a span or of the audit
trail rebuild the raw values. (A digest of a low-entropy input can still be
confirmed by guessing: treat audit files as sensitive all the same.)

>>> import numpy as np
>>> input_sha256(np.zeros((1, 2)))[:16]
'374708fff7719dd5'
>>> input_summary(np.array([[1.0, 3.0]]))["mean"]
2.0
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def input_sha256(value: Any) -> str | None:
    """Hex SHA-256 of the validated input array's bytes (C order), or ``None``."""
    if value is None:
        return None
    try:
        arr = np.ascontiguousarray(value)
        if arr.dtype.hasobject:
            return None
        return hashlib.sha256(arr.data).hexdigest()
    except (TypeError, ValueError, BufferError):
        return None


def input_summary(value: Any) -> dict[str, Any] | None:
    """Rows, shape, dtype and min / max / mean / std over all values; no raw value."""
    if value is None:
        return None
    try:
        arr = np.asarray(value)
        summary: dict[str, Any] = {
            "rows": int(arr.shape[0]) if arr.ndim else 1,
            "shape": [int(d) for d in arr.shape],
            "dtype": str(arr.dtype),
        }
        if arr.size and arr.dtype.kind in "biuf":
            data = arr.astype(np.float64, copy=False)
            summary.update(
                min=float(data.min()),
                max=float(data.max()),
                mean=float(data.mean()),
                std=float(data.std()),
            )
        return summary
    except (TypeError, ValueError):
        return None
