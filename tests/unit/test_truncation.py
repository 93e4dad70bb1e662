"""Confidence truncation keeps shape and the argmax of every row, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bento_invguard import truncate

MODES = ("label", "top_k", "rounded", "full")

probabilities = hnp.arrays(
    dtype=np.float64,
    shape=st.tuples(st.integers(1, 8), st.integers(1, 12)),
    elements=st.floats(0.0, 1.0, allow_nan=False),
)
# Quantised values make ties (exact and after rounding) common.
tied = hnp.arrays(
    dtype=np.float64,
    shape=st.tuples(st.integers(1, 8), st.integers(2, 6)),
    elements=st.sampled_from([0.0, 0.1, 0.25, 0.2449, 0.2451, 0.5, 0.4951, 0.495]),
)
logits = hnp.arrays(
    dtype=np.float32,
    shape=st.tuples(st.integers(1, 6), st.integers(1, 10)),
    elements=st.floats(-50, 50, allow_nan=False, width=32),
)


def _strict_argmax_kept(scores: np.ndarray, out: np.ndarray) -> None:
    winners = np.argmax(scores, axis=1)
    assert scores.shape == out.shape
    assert (winners == np.argmax(out, axis=1)).all()
    # The winner is the strict maximum: every reader's argmax agrees.
    rows = np.arange(out.shape[0])
    top = out[rows, winners]
    others = out.copy()
    others[rows, winners] = -np.inf
    if out.shape[1] > 1:
        assert (others.max(axis=1) < top).all()


@settings(max_examples=300, deadline=None)
@given(
    scores=st.one_of(probabilities, tied, logits),
    mode=st.sampled_from(MODES[:3]),
    k=st.integers(1, 12),
    decimals=st.integers(0, 4),
)
def test_argmax_is_preserved(scores: np.ndarray, mode: str, k: int, decimals: int) -> None:
    """For every mode, k and rounding, the returned argmax is the model's argmax."""
    out = truncate(scores, mode, k=k, decimals=decimals)
    _strict_argmax_kept(scores, out)


@settings(max_examples=200, deadline=None)
@given(scores=probabilities, k=st.integers(1, 12), decimals=st.integers(0, 4))
def test_top_k_keeps_at_most_k_nonzero(scores: np.ndarray, k: int, decimals: int) -> None:
    """top_k reveals at most k classes per row and never a negative probability."""
    out = truncate(scores, "top_k", k=k, decimals=decimals)
    assert ((out != 0).sum(axis=1) <= k).all()
    assert (out >= 0).all()


@settings(max_examples=200, deadline=None)
@given(scores=probabilities)
def test_label_is_one_hot(scores: np.ndarray) -> None:
    """label returns exactly one 1 per row, at the argmax."""
    out = truncate(scores, "label")
    assert (out.sum(axis=1) == 1).all()
    assert set(np.unique(out)) <= {0.0, 1.0}


def test_full_is_untouched() -> None:
    """full returns the very same scores."""
    s = np.array([[0.2, 0.8]])
    assert truncate(s, "full") is s


def test_rounded_values() -> None:
    """rounded rounds to the tier's decimals; a rounding tie gives way to the winner."""
    s = np.array([[0.4950, 0.4951, 0.0099]])
    assert [[0.49, 0.5, 0.01]] == truncate(s, "rounded", decimals=2).tolist()


def test_exact_tie_goes_to_first_class() -> None:
    """An exact tie resolves as np.argmax does: to the first class."""
    out = truncate(np.array([[0.5, 0.5]]), "top_k", k=2, decimals=1)
    assert [[0.5, 0.4]] == out.tolist()


def test_single_row_and_dtype_kept() -> None:
    """A (classes,) row stays a row; float32 stays float32."""
    out = truncate(np.array([0.1, 0.9], dtype=np.float32), "label")
    assert (2,) == out.shape
    assert np.float32 == out.dtype


def test_logits_top_k_stays_below_winner() -> None:
    """For negative scores the dropped classes sit below every kept one."""
    out = truncate(np.array([[-1.0, -2.0, -3.0]]), "top_k", k=1, decimals=1)
    assert 0 == int(np.argmax(out))


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2)), np.zeros((3, 0))])
def test_bad_shapes_raise(bad: np.ndarray) -> None:
    """Scores must be (n, classes)."""
    with pytest.raises(ValueError, match="shape"):
        truncate(bad, "label")


one_row = hnp.arrays(
    dtype=np.float64,
    shape=st.tuples(st.just(1), st.integers(1, 12)),
    elements=st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False),
        st.sampled_from([0.0, -0.0, 0.1, 0.25, 0.2449, 0.2451, 0.5, 0.4951, 0.495, -0.005]),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    scores=one_row,
    mode=st.sampled_from(("top_k", "rounded", "label")),
    k=st.integers(1, 12),
    decimals=st.one_of(st.integers(0, 6), st.integers(-2, 25)),
)
def test_one_row_path_equals_the_array_path(
    scores: np.ndarray, mode: str, k: int, decimals: int
) -> None:
    """One float64 row takes a path in Python floats; it must give the array path's bits."""
    from bento_invguard.hardening import truncation

    with np.errstate(all="ignore"):  # both paths warn alike on overflow
        fast = truncate(scores, mode, k=k, decimals=decimals)
        winners = np.argmax(scores, axis=1)
        if mode == "top_k":
            array = truncation._top_k(scores, k, decimals, winners)
        elif mode == "rounded":
            array = truncation._rounded(scores, decimals, winners)
        else:
            array = truncation._label(scores, winners)
    assert fast.dtype == array.dtype and fast.shape == array.shape
    np.testing.assert_array_equal(fast, array)
    assert (np.signbit(fast) == np.signbit(array)).all()


@settings(max_examples=500, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.floats(-10.0, 10.0),
            st.integers(-20000, 20000).map(lambda i: i / 1000 + 0.0005),  # half-way points
            st.sampled_from([0.0, -0.0, 0.125, -0.375, 2.5, 1e300, -1e300, 5e-324]),
        ),
        min_size=1,
        max_size=12,
    ),
    decimals=st.integers(0, 22),
)
def test_rounding_in_python_floats_is_numpys(values: list[float], decimals: int) -> None:
    """The one-row path's rounding gives np.round's bits, signs of zero included."""
    from bento_invguard.hardening.truncation import _rounded_floats

    row = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):  # x * 10**d may overflow, in both
        ours = np.asarray(_rounded_floats(values, decimals))
        numpys = np.round(row, decimals)
    np.testing.assert_array_equal(ours, numpys)
    assert (np.signbit(ours) == np.signbit(numpys)).all()


@settings(max_examples=300, deadline=None)
@given(
    scores=st.one_of(
        one_row,
        probabilities,
        tied,
        logits,
        hnp.arrays(dtype=np.int64, shape=st.tuples(st.integers(1, 3), st.integers(1, 6))),
    )
)
def test_the_predicted_classes_are_argmax(scores: np.ndarray) -> None:
    """Whatever the mode, and whichever path (one row in floats, or arrays) answers."""
    from bento_invguard.hardening.truncation import MODES, truncate_and_predict

    for mode in MODES:
        _, predicted = truncate_and_predict(scores, mode, k=2, decimals=1)
        assert predicted == np.argmax(scores, axis=1).tolist()
