"""The profile's distance to the data: real held-out rows pass, probes off the data do not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bento_invguard import InvalidInput, PolicyError, Profile
from bento_invguard.context import QueryContext
from bento_invguard.policy import InputPolicy
from bento_invguard.validation import InputValidator

from ..conftest import digits_module

EXAMPLE_PROFILE = Path(__file__).parents[2] / "examples" / "digits" / "digits.profile.json"


def probes(x: np.ndarray, scale: float, n: int, seed: int = 0) -> np.ndarray:
    """Reverse-correlation probes as the label-only attack draws them, from public rows ``x``."""
    lower, upper = x.min(axis=0), x.max(axis=0)
    noise = np.random.default_rng(seed).standard_normal((n, x.shape[1])) * x.std(axis=0)
    noise[:, upper == lower] = 0.0
    clipped: np.ndarray = np.clip(x.mean(axis=0) + scale * noise, lower, upper)
    return clipped


def test_every_held_out_digit_passes(
    profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """All 450 held-out digits (never used for fitting) pass both checks, alone and together."""
    _, x_test = digits
    assert 450 == len(x_test)
    assert profile.checks_distance
    assert 0 == int(profile.outliers(x_test).sum())
    assert profile.first_violation(x_test) is None
    assert all(profile.first_violation(x_test[i : i + 1]) is None for i in range(len(x_test)))


def test_every_held_out_digit_passes_whatever_the_fold_seed(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """The tolerances do not hinge on one lucky split of the training rows."""
    x_train, x_test = digits
    for seed in range(5):
        assert 0 == int(Profile.fit(x_train, seed=seed).outliers(x_test).sum())


def test_noise_and_probes_fail(profile: Profile, digits: tuple[np.ndarray, np.ndarray]) -> None:
    """Uniform noise fails; reverse-correlation probes fail although in bounds: more than
    half at 2 spreads (the limit is set for 5e-5 false positives), nearly all at 4."""
    _, x_test = digits
    noise = np.random.default_rng(0).uniform(0, 16, size=(500, 64))
    assert 1.0 == float(profile.outliers(noise).mean())
    rows = probes(x_test, 2.0, 2000)
    in_bounds = ((rows >= np.array(profile.lower)) & (rows <= np.array(profile.upper))).all(axis=1)
    assert 1.0 == float(in_bounds.mean())
    assert 0.5 < float(profile.outliers(rows).mean())
    assert 0.95 < float(profile.outliers(probes(x_test, 4.0, 2000)).mean())
    # 20 probes to a request: every request holds at least one refused row
    assert all(profile.first_violation(rows[i : i + 20]) is not None for i in range(0, 2000, 20))


def test_distance_refusal_names_the_row_and_no_figures(
    profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """422 check ``profile``, the first far row named; no distance or limit to search against."""
    _, x_test = digits
    far = probes(x_test, 3.0, 50)
    far = far[profile.outliers(far)][:1]
    ctx = QueryContext(endpoint="predict")
    with pytest.raises(InvalidInput) as info:
        InputValidator(InputPolicy(shape=(64,)), profile)(ctx, np.vstack([x_test[:2], far]))
    assert "profile" == info.value.check
    assert "profile: row 2 is far from the reference data" == info.value.detail
    violation = profile.first_violation(np.vstack([x_test[:2], far]))
    assert violation is not None
    assert ("distance", 2) == (violation.kind, violation.row)


def test_distances_of_training_rows_stay_under_the_limit(profile: Profile) -> None:
    """The limit sits above every fitted row's distance, and distances are never negative."""
    x_train = np.asarray(digits_module("model").load_split()[0])  # type: ignore[attr-defined]
    d = profile.distances(x_train)
    assert profile.distance_limit is not None
    assert bool((d >= 0).all())
    assert bool((d <= profile.distance_limit).all())


def test_round_trip_and_old_profiles(profile: Profile, tmp_path: Path) -> None:
    """The subspace is saved as JSON and loads back; a profile without one has no distance check."""
    path = profile.save(tmp_path / "p.json")
    loaded = Profile.load(path)
    assert profile == loaded
    assert loaded.checks_distance
    data = json.loads(path.read_text())
    for name in ("components", "component_variances", "residual_variance", "distance_limit"):
        data.pop(name)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    legacy = Profile.load(old)
    assert not legacy.checks_distance
    assert [0.0, 0.0] == legacy.distances(np.zeros((2, 64))).tolist()


def test_partial_subspace_is_refused(profile: Profile, tmp_path: Path) -> None:
    """A profile with some of the distance fields but not all is a load error naming them."""
    data = json.loads(profile.model_dump_json())
    data.pop("distance_limit")
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PolicyError, match="give all four or none"):
        Profile.load(path)


def test_distance_can_be_turned_off(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """``distance=False`` fits bounds only; tiny data sets get no distance check either."""
    assert not Profile.fit(digits[0], distance=False).checks_distance
    assert not Profile.fit(np.random.default_rng(0).normal(size=(5, 3))).checks_distance


def test_example_profile_has_the_distance_check() -> None:
    """The committed digits profile is fitted with the distance check."""
    assert Profile.load(EXAMPLE_PROFILE).checks_distance
