"""Leakage scores: the NumPy softmax regression, the judge, agreement."""

from __future__ import annotations

import numpy as np
import pytest

from bento_invguard.redteam.scoring import (
    SoftmaxRegression,
    agreement,
    fit_judge,
    inversion_leakage,
)

from .conftest import Digits


def test_softmax_regression_learns_digits(digits: Digits) -> None:
    """Trained on half of the held-out digits, it labels the other half well (a useful judge)."""
    x, y = digits.x_test, digits.y_test
    model = SoftmaxRegression(10).fit(x[::2], y[::2])
    assert (model.predict(x[1::2]) == y[1::2]).mean() > 0.9
    proba = model.predict_proba(x[:5])
    assert proba.shape == (5, 10)
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_softmax_regression_takes_soft_targets() -> None:
    """Rows of probabilities train it as labels do (distillation)."""
    x = np.array([[0.0], [1.0], [3.0], [4.0]])
    soft = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])
    assert SoftmaxRegression(2).fit(x, soft).predict(np.array([[0.5], [3.5]])).tolist() == [0, 1]


def test_softmax_regression_refuses_bad_targets() -> None:
    with pytest.raises(ValueError, match="labels must lie"):
        SoftmaxRegression(2).fit(np.zeros((2, 1)), np.array([0, 5]))
    with pytest.raises(ValueError, match="columns"):
        SoftmaxRegression(2).fit(np.zeros((2, 1)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="zero rows"):
        SoftmaxRegression(2).fit(np.zeros((0, 1)), np.zeros(0, dtype=int))


def test_class_means_leak_and_blank_images_do_not(digits: Digits) -> None:
    """Class means are recognised (score 1); one blank image per class scores at most chance."""
    x, y = digits.x_test, digits.y_test
    judge = fit_judge(x, y, 10)
    means = np.array([x[y == c].mean(axis=0) for c in range(10)])
    leak = inversion_leakage(judge, means, np.arange(10), reference=(x, y))
    assert leak.accuracy == 1.0
    assert leak.advantage == 1.0
    assert leak.chance == pytest.approx(0.1)
    assert leak.judge_accuracy > 0.95
    blank = inversion_leakage(judge, np.zeros((10, 64)), np.arange(10))
    assert blank.accuracy == pytest.approx(0.1)  # one class of ten: its label is right once
    assert blank.advantage == 0.0
    assert sum(blank.recognised) == 1
    report = leak.as_dict()
    assert report["score"] == 1.0 and report["chance"] == 0.1
    assert len(report["recognised"]) == 10


def test_inversion_leakage_needs_one_reconstruction_per_target(digits: Digits) -> None:
    judge = fit_judge(digits.x_test, digits.y_test, 10)
    with pytest.raises(ValueError, match="one reconstruction per target"):
        inversion_leakage(judge, np.zeros((2, 64)), np.arange(3))
    with pytest.raises(ValueError, match="no reconstruction"):
        inversion_leakage(judge, np.zeros((0, 64)), np.arange(0))


def test_agreement() -> None:
    assert agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="compare"):
        agreement(np.array([1, 2]), np.array([1]))
    with pytest.raises(ValueError, match="no rows"):
        agreement(np.array([]), np.array([]))
