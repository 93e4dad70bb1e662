"""json_safe: the one JSON-safe copy used by audit records, the JSON-lines sink and the
red-team report."""

from __future__ import annotations

import json
import math

import numpy as np

from bento_invguard.audit.jsonsafe import json_safe
from bento_invguard.audit.sinks.jsonl import encode_line


def test_non_finite_values_become_null_at_any_depth() -> None:
    value = {
        "a": [1.0, math.nan, (math.inf, -math.inf)],
        "b": np.array([[0.5, np.nan], [np.inf, 2.0]]),
        "c": {"d": np.float32("nan"), "e": np.float64(1.5), "f": np.int64(3)},
        4: "text",
        "g": None,
        "h": True,
    }
    safe = json_safe(value)
    assert safe == {
        "a": [1.0, None, [None, None]],
        "b": [[0.5, None], [None, 2.0]],
        "c": {"d": None, "e": 1.5, "f": 3},
        "4": "text",
        "g": None,
        "h": True,
    }
    assert type(safe["c"]["e"]) is float and type(safe["c"]["f"]) is int
    json.dumps(safe, allow_nan=False)  # strict JSON


def test_scalars_pass_through() -> None:
    assert json_safe(math.nan) is None
    assert json_safe(2.0) == 2.0
    assert json_safe("x") == "x"
    assert json_safe(None) is None
    assert json_safe(np.bool_(True)) is True


def test_sink_lines_stay_strict() -> None:
    line = encode_line({"risk": {"score": math.nan}, "raw": [[1.0, math.inf]]})
    assert json.loads(line) == {"risk": {"score": None}, "raw": [[1.0, None]]}
