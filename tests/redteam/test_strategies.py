"""Extraction's query strategies: shapes, the box, seeds, in-domain and out-of-domain rows."""

from __future__ import annotations

import numpy as np
import pytest

from bento_invguard import Profile
from bento_invguard.redteam import InputSpace, SoftmaxRegression
from bento_invguard.redteam.strategies import (
    blend_rows,
    jacobian_step,
    knockoff_rows,
    natural_rows,
    uniform_rows,
)

from .conftest import Digits


@pytest.fixture(scope="module")
def space(digits: Digits) -> InputSpace:
    return InputSpace.from_rows(digits.x_test, 0.0, 16.0)


def draw(name: str, space: InputSpace, pool: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "uniform":
        return uniform_rows(space, n, rng)
    if name == "blend":
        return blend_rows(space, pool, n, rng)
    if name == "knockoff":
        return knockoff_rows(space, n, rng, low=0.0, high=16.0)
    return natural_rows(space, pool, n, rng)


@pytest.mark.parametrize("name", ["natural", "uniform", "blend", "knockoff"])
def test_rows_have_the_shape_and_stay_in_the_box(
    name: str, space: InputSpace, digits: Digits
) -> None:
    """Every strategy gives (n, features) rows inside the attacker's input box."""
    rows = draw(name, space, digits.x_test[:50], 120, seed=1)
    assert (120, 64) == rows.shape
    assert ((rows >= space.lower) & (rows <= space.upper)).all()


@pytest.mark.parametrize("name", ["natural", "uniform", "blend", "knockoff"])
def test_same_seed_same_rows(name: str, space: InputSpace, digits: Digits) -> None:
    """A seed fixes the rows; another seed changes them."""
    pool = digits.x_test[:50]
    first = draw(name, space, pool, 60, seed=3)
    assert np.array_equal(first, draw(name, space, pool, 60, seed=3))
    assert not np.array_equal(first, draw(name, space, pool, 60, seed=4))


def test_blends_mix_two_or_three_pool_rows(space: InputSpace) -> None:
    """A blend of one-hot rows is a convex mix: non-negative, sums to 1, 2-3 parts."""
    pool = np.eye(64)[:5] * 16.0
    wide = InputSpace.from_range(64, 0.0, 16.0)
    rows = blend_rows(wide, pool, 400, np.random.default_rng(0))
    assert np.allclose(16.0, rows.sum(axis=1))
    parts = (rows > 1e-9).sum(axis=1)
    assert set(np.unique(parts)) <= {1, 2, 3}  # two draws of the same row merge
    assert (parts == 2).any() and (parts == 3).any()


def test_in_domain_and_out_of_domain(space: InputSpace, digits: Digits) -> None:
    """Against a profile of the training data: natural and blends are in, uniform and photos out."""
    profile = Profile.fit(digits.x_test[100:])
    pool = digits.x_test[:100]
    median = {
        name: float(np.median(profile.distances(draw(name, space, pool, 200, seed=0))))
        for name in ("natural", "blend", "uniform", "knockoff")
    }
    assert max(median["natural"], median["blend"]) < min(median["uniform"], median["knockoff"])
    photos = draw("knockoff", space, pool, 200, seed=0)
    assert profile.outliers(photos).mean() > 0.2


def test_knockoff_rows_are_photographs_not_noise(space: InputSpace) -> None:
    """Neighbouring pixels of a photograph crop are alike; of uniform noise they are not."""
    rng = np.random.default_rng(0)
    photos = knockoff_rows(space, 100, rng, low=0.0, high=16.0).reshape(100, 8, 8)
    noise = uniform_rows(InputSpace.from_range(64, 0.0, 16.0), 100, rng).reshape(100, 8, 8)

    def roughness(images: np.ndarray) -> float:
        return float(np.abs(np.diff(images, axis=2)).mean())

    assert roughness(photos) < 0.5 * roughness(noise)


def test_jacobian_step_moves_towards_the_label() -> None:
    """Each row moves by the step along the sign of the copy's gradient for its label."""
    x = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]] * 5)
    y = np.array([0, 1, 1, 0] * 5)
    copy = SoftmaxRegression(2).fit(x, y)
    box = InputSpace.from_range(2, -5.0, 5.0)
    rows = np.array([[0.5, 0.5], [0.5, 0.5]])
    moved = jacobian_step(copy, rows, np.array([0, 1]), box, 0.25)
    assert np.allclose(0.25, np.abs(moved - rows))
    assert (copy.predict_proba(moved[1:])[0, 1] > copy.predict_proba(rows[1:])[0, 1]).all()
    assert (copy.predict_proba(moved[:1])[0, 0] > copy.predict_proba(rows[:1])[0, 0]).all()
