"""The audit writer summarises a batch of inputs at once: the same figures as one by one."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bento_invguard.telemetry.inputs import input_summaries, input_summary

shapes = st.sampled_from([(1, 64), (1, 4), (2, 4), (3,), (1, 2, 3)])
dtypes = st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_])


@st.composite
def batches(draw: st.DrawFn) -> list[Any]:
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            out.append(None)
        elif kind == 1:
            out.append([[1.0, 2.0], [3.0, 4.5]])  # not an ndarray
        elif kind == 2:
            out.append(np.zeros((0, 4)))  # empty
        else:
            dtype = draw(dtypes)
            elements = (
                st.floats(-1e6, 1e6, width=32 if dtype is np.float32 else 64)
                if np.dtype(dtype).kind == "f"
                else None
            )
            out.append(draw(hnp.arrays(dtype=dtype, shape=draw(shapes), elements=elements)))
    return out


@settings(max_examples=200, deadline=None)
@given(values=batches())
def test_batch_summaries_equal_one_by_one(values: list[Any]) -> None:
    assert input_summaries(values) == [input_summary(v) for v in values]


def test_a_typical_batch_of_one_row_queries() -> None:
    rows = [np.random.default_rng(i).uniform(0, 16, (1, 64)) for i in range(50)]
    assert input_summaries(rows) == [input_summary(r) for r in rows]
