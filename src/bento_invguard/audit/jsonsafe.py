"""One JSON-safe copy of a value, for strict JSON (``allow_nan=False``).

Used by the audit records, the JSON-lines sink and the red-team report.
"""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """A copy ready for strict JSON: NaN and infinities as None.

    Floats (NumPy's included) become Python floats; dicts get string keys;
    lists and tuples become lists; anything with ``tolist()`` (NumPy arrays
    and scalars) is converted with it; every other value is returned as is.

    >>> import numpy as np
    >>> json_safe({"a": np.array([1.0, np.nan]), 2: (np.float32(np.inf), "x")})
    {'a': [1.0, None], '2': [None, 'x']}
    """
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return json_safe(tolist())
    return value
