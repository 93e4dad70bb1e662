"""The view's thresholds, calibrated on the training digits, hold on digits never seen."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bento_invguard import Profile
from bento_invguard.reference import NeighbourCalibration, Sketch, Thresholds
from bento_invguard.reference.calibration import LARGEST_CLUSTER, SMALLEST_CLUSTER

from ..view.conftest import X_TEST, X_TRAIN


@pytest.fixture(scope="module")
def calibration() -> NeighbourCalibration:
    """Fitted on the training digits' fingerprints only."""
    fitted = NeighbourCalibration.fit(Sketch(64, X_TRAIN.mean(axis=0))(X_TRAIN))
    assert fitted is not None
    return fitted


@pytest.fixture(scope="module")
def test_neighbours() -> np.ndarray:
    """Each held-out digit's fingerprint distances to the other held-out digits, ascending."""
    prints = Sketch(64, X_TRAIN.mean(axis=0))(X_TEST).astype(np.float64)
    distances = np.linalg.norm(prints[:, None, :] - prints[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)


def false_positives(neighbours: np.ndarray, thresholds: Thresholds) -> int:
    """Held-out digits with ``cluster_size`` others within ``radius``: natural queries
    that a view holding the other held-out digits would call probing."""
    within = neighbours[:, thresholds.cluster_size - 1] <= thresholds.radius
    return int(within.sum())


def test_no_held_out_digit_is_in_a_cluster_at_the_default_rate(
    calibration: NeighbourCalibration, test_neighbours: np.ndarray, thresholds: Thresholds
) -> None:
    """At the default policy's rate (and at the profile's 5e-5), none of the 450 held-out
    digits has cluster_size neighbours among the others, whatever view size."""
    for view_size in (len(X_TEST), 10_000, 100_000):
        at_rate = calibration.thresholds(5e-5, view_size)
        assert 0 == false_positives(test_neighbours, at_rate), (view_size, at_rate)
    assert 0 == false_positives(test_neighbours, thresholds)


@pytest.mark.parametrize("rate", [0.05, 0.01, 1e-3])
def test_held_out_false_positive_share_stays_below_the_target(
    calibration: NeighbourCalibration, test_neighbours: np.ndarray, rate: float
) -> None:
    """For a view as large as the held-out set, the share of held-out digits caught is at
    most the target rate (and the threshold is not so tight that nothing could be)."""
    thresholds = calibration.thresholds(rate, len(X_TEST))
    caught = false_positives(test_neighbours, thresholds)
    assert caught <= rate * len(X_TEST), (caught, thresholds)
    assert thresholds.radius > float(test_neighbours[:, 0].min()) / 2


def test_the_profile_keeps_the_same_calibration() -> None:
    """Profile.fit stores the neighbour calibration of its rows (same seed, same split)."""
    fitted = Profile.fit(X_TRAIN).calibration
    assert fitted is not None and fitted.neighbours is not None
    expected = NeighbourCalibration.fit(Sketch(64, X_TRAIN.mean(axis=0))(X_TRAIN))
    assert expected == fitted.neighbours


def test_too_few_rows_give_no_calibration() -> None:
    """Without enough rows to hold some out, there is no calibration (the view then needs
    a radius from the policy or the input range)."""
    assert NeighbourCalibration.fit(Sketch(64)(X_TRAIN[:50])) is None


def test_the_calibration_survives_json(calibration: NeighbourCalibration) -> None:
    """It is kept in the profile file: a JSON round trip gives the same thresholds."""
    back = NeighbourCalibration.model_validate_json(calibration.model_dump_json())
    assert calibration.thresholds(1e-4, 5000) == back.thresholds(1e-4, 5000)


rates = st.floats(min_value=1e-9, max_value=0.4)
sizes = st.integers(min_value=1, max_value=50_000_000)


@settings(max_examples=200, deadline=None)
@given(rate=rates, other_rate=rates, size=sizes, other_size=sizes)
def test_thresholds_tighten_with_a_smaller_rate_or_a_larger_view(
    calibration: NeighbourCalibration, rate: float, other_rate: float, size: int, other_size: int
) -> None:
    """For every cluster size, the radius shrinks (never grows) as the target rate shrinks or
    the view grows; so does the widest chain step the chosen thresholds catch (radius per
    cluster member). The chosen radius alone is not monotone: a lower rate may pick a
    larger cluster with a larger radius."""
    low, high = sorted((rate, other_rate))
    small, large = sorted((size, other_size))
    for c in range(SMALLEST_CLUSTER, LARGEST_CLUSTER + 1):
        assert calibration.radius(c, low, small) <= calibration.radius(c, high, small)
        assert calibration.radius(c, high, large) <= calibration.radius(c, high, small)

    def step(t: Thresholds) -> float:
        return t.radius / t.cluster_size

    assert step(calibration.thresholds(low, small)) <= step(calibration.thresholds(high, small))
    assert step(calibration.thresholds(high, large)) <= step(calibration.thresholds(high, small))
    t = calibration.thresholds(low, large)
    assert SMALLEST_CLUSTER <= t.cluster_size <= LARGEST_CLUSTER and t.radius > 0
