"""The calibrated profile as the normal path: `init --data`, `profile fit`'s rates, audit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bento_invguard import Policy, Profile

from .conftest import Run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "digits"))


def digits_train(tmp_path: Path) -> Path:
    from model import load_split

    x_train = load_split()[0]
    path = tmp_path / "x_train.npy"
    np.save(path, x_train)
    return path


def test_init_with_data_fits_the_profile_and_fills_the_input(run: Run, tmp_path: Path) -> None:
    """`init --data` writes profile.json and a policy whose input names it, with the data's
    shape and range; the printed rates come from the held-out rows."""
    data = digits_train(tmp_path)
    result = run("init", tmp_path / "svc", "--data", data)
    assert 0 == result.code, result.err
    policy = Policy.from_file(tmp_path / "svc" / "invguard.yaml")
    assert (64,) == policy.input.shape
    assert (0.0, 16.0) == (policy.input.min, policy.input.max)
    profile = Profile.load(policy.resolve(policy.input.profile))  # type: ignore[arg-type]
    assert profile.calibration is not None and profile.calibration.neighbours is not None
    assert "shared view of 100000 queries: radius" in result.out
    assert "(0 of 1347 held-out rows beyond it)" in result.out


def test_profile_fit_prints_the_rates_for_the_target(run: Run, tmp_path: Path) -> None:
    """A larger target rate gives a tighter distance limit and says so."""
    data = digits_train(tmp_path)
    strict = run("profile", "fit", data, "-o", tmp_path / "a.json")
    loose = run("profile", "fit", data, "-o", tmp_path / "b.json", "--target-fpr", "0.01")
    assert 0 == strict.code == loose.code
    assert "for a target of 0.0001:" in strict.out and "for a target of 0.01:" in loose.out
    a, b = Profile.load(tmp_path / "a.json"), Profile.load(tmp_path / "b.json")
    assert a.distance_limit is not None and b.distance_limit is not None
    assert b.distance_limit < a.distance_limit


def test_audit_says_the_shared_view_is_off_without_anything_to_calibrate_it(
    run: Run, tmp_path: Path
) -> None:
    """No profile, range or radius: a HIGH finding that probing over many keys is not caught;
    with a range and shape, the view runs (no such finding)."""
    bare = tmp_path / "bare.yaml"
    bare.write_text("version: 1\ntiers: {public: {output: label, rate_limit: '5/second'}}\n")
    ranged = tmp_path / "ranged.yaml"
    ranged.write_text(
        "version: 1\ntiers: {public: {output: label, rate_limit: '5/second'}}\n"
        "input: {shape: [4], min: 0, max: 1}\n"
    )
    off = run("audit", bare)
    on = run("audit", ranged)
    assert "the shared view is off" in off.out
    assert "the shared view is off" not in on.out
