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


@pytest.mark.parametrize("mode", ["top_k", "rounded"])
def test_huge_scores_stay_finite(mode: str) -> None:
    """A score too large to scale for rounding is kept as it is, never turned into inf."""
    scores = np.array([[1.7e308, -1.7e308, 0.5]])
    out = truncate(scores, mode, k=3, decimals=2)
    assert [[1.7e308, -1.7e308, 0.5]] == out.tolist()


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
    """Whatever the mode, for one row (NaN and infinities included) or many."""
    from bento_invguard.hardening.truncation import MODES, truncate_and_predict

    for mode in MODES:
        _, predicted = truncate_and_predict(scores, mode, k=2, decimals=1)
        assert predicted == np.argmax(scores, axis=1).tolist()
