"""The keyed hash: which rows are watermarked, with which label, and how the row changes."""

from __future__ import annotations

import numpy as np
import pytest

from bento_invguard.hardening.truncation import truncate_for_tier
from bento_invguard.policy import Tier
from bento_invguard.watermark import (
    canonical_bytes,
    is_chosen,
    mark_label,
    marked_row,
    row_digest,
)

SECRET = b"test-secret"


def chosen_rows(rows: np.ndarray, rate: float, secret: bytes = SECRET) -> set[int]:
    return {i for i, row in enumerate(rows) if is_chosen(row_digest(secret, row), rate)}


def test_selection_rate_is_the_policy_rate() -> None:
    """Of 40,000 random rows, the fraction chosen at rate 0.005 is within 5 sigma of it."""
    rows = np.random.default_rng(0).uniform(0, 16, size=(40_000, 8))
    fraction = len(chosen_rows(rows, 0.005)) / len(rows)
    sigma = (0.005 * 0.995 / len(rows)) ** 0.5
    assert abs(fraction - 0.005) < 5 * sigma


def test_choice_is_deterministic_and_keyed() -> None:
    """The same rows choose the same way every time; another secret chooses others."""
    rows = np.random.default_rng(1).uniform(0, 16, size=(5000, 8))
    first = chosen_rows(rows, 0.02)
    assert first == chosen_rows(rows.copy(), 0.02)
    other = chosen_rows(rows, 0.02, b"another-secret")
    assert first and other
    assert len(first & other) < len(first) / 2


def test_canonical_bytes_ignore_dtype_and_negative_zero_but_not_shape() -> None:
    """An int row, its float twin and -0.0 hash alike; a reshaped row does not."""
    ints = np.array([0, 3, 16])
    assert canonical_bytes(ints) == canonical_bytes(np.array([-0.0, 3.0, 16.0]))
    assert canonical_bytes(np.arange(4.0)) != canonical_bytes(np.arange(4.0).reshape(2, 2))


def test_mark_label_is_never_the_top_class_and_covers_the_others() -> None:
    """Over many digests the label is never top-1 and takes every other class about equally."""
    rng = np.random.default_rng(2)
    counts = np.zeros(10, dtype=int)
    for _ in range(9000):
        label = mark_label(rng.bytes(32), 4, 10)
        assert label != 4
        counts[label] += 1
    assert counts[4] == 0
    others = np.delete(counts, 4)
    assert others.min() > 800 and others.max() < 1200


@pytest.mark.parametrize("mode", ["label", "top_k", "rounded", "full"])
def test_every_output_mode_shows_the_mark_as_top1(mode: str) -> None:
    """After truncation in any mode, a marked row's argmax is its watermark label."""
    rng = np.random.default_rng(3)
    tier = Tier(output=mode, k=3, decimals=2)  # type: ignore[arg-type]
    for _ in range(200):
        scores = rng.dirichlet(np.ones(10))
        label = int(rng.choice([c for c in range(10) if c != scores.argmax()]))
        row = marked_row(scores, label)
        assert row is not None
        out, predicted = truncate_for_tier(row[np.newaxis, :], tier)
        assert [label] == predicted
        assert label == int(np.argmax(out[0]))


def test_marked_row_swaps_scores_and_breaks_ties() -> None:
    """Scores are permuted (same values); a tie with the top-1 is broken for the label."""
    scores = np.array([0.1, 0.6, 0.3])
    assert sorted(scores.tolist()) == sorted(marked_row(scores, 0).tolist())  # type: ignore[union-attr]
    tied = marked_row(np.array([0.4, 0.4, 0.2]), 2)
    assert tied is not None and 2 == int(np.argmax(tied))
    assert marked_row(np.full(4, 0.25), 1) is None
