"""Input checks and the reference profile: each failure names the check and position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bento_invguard import InvalidInput, PolicyError, Profile
from bento_invguard.context import QueryContext
from bento_invguard.policy import InputPolicy
from bento_invguard.validation import InputValidator

from ..conftest import digits_module


def check(spec: InputPolicy, value: object, profile: Profile | None = None) -> QueryContext:
    ctx = QueryContext(endpoint="predict")
    InputValidator(spec, profile)(ctx, value)
    return ctx


SPEC = InputPolicy(shape=(3,), dtype="float", min=0.0, max=1.0, max_rows=4)


def test_valid_batch_passes_and_counts_rows() -> None:
    """A good batch passes; the context learns how many rows it holds."""
    ctx = check(SPEC, [[0.1, 0.2, 0.3], [1, 0, 0]])
    assert 2 == ctx.rows
    assert "pass" == ctx.decisions[-1].outcome


@pytest.mark.parametrize(
    ("value", "check_name", "fragment"),
    [
        ([0.1, 0.2, 0.3], "shape", "expected (n, 3), got (3,)"),
        ([[0.1, 0.2]], "shape", "got (1, 2)"),
        ([], "shape", "empty batch"),
        (np.zeros((0, 3)), "shape", "empty batch"),
        (5.0, "shape", "single value"),
        (np.zeros((5, 3)), "shape", "at most 4"),
        ([["a", "b", "c"]], "dtype", "strings"),
        (np.array([[True, False, True]]), "dtype", "booleans"),
        (np.array([[{}, 1, 2]], dtype=object), "dtype", "mixed objects"),
        (np.array([[1j, 0, 0]]), "dtype", "complex"),
        ([[0.1, float("nan"), 0.3]], "finite", "at [0, 1]"),
        ([[0.1, 0.2, 0.3], [0.1, 0.2, float("inf")]], "finite", "at [1, 2]"),
        ([[0.1, 0.2, 1e308]], "range", "above max 1.0"),
        ([[0.1, -0.5, 0.3]], "range", "at [0, 1] is below min 0.0"),
    ],
)
def test_failures_name_check_and_position(value: object, check_name: str, fragment: str) -> None:
    """Each failed check is a 422 naming the check and the offending place."""
    with pytest.raises(InvalidInput) as info:
        check(SPEC, value)
    assert check_name == info.value.check
    assert fragment in info.value.detail
    assert 422 == info.value.status


def test_ragged_list_is_a_shape_error() -> None:
    """A ragged nested list is refused as a shape error, not a crash."""
    with pytest.raises(InvalidInput) as info:
        check(SPEC, [[0.1, 0.2, 0.3], [0.1]])
    assert "shape" == info.value.check


def test_int_policy_refuses_floats() -> None:
    """dtype int accepts integers only."""
    spec = InputPolicy(shape=(2,), dtype="int")
    check(spec, [[1, 2]])
    with pytest.raises(InvalidInput, match="dtype"):
        check(spec, [[1.5, 2.0]])


def test_profile_fit_and_reject(tmp_path: Path) -> None:
    """A fitted profile passes training-like rows and names the feature of an outlier."""
    rng = np.random.default_rng(1)
    train = rng.uniform(0, 1, size=(500, 3))
    profile = Profile.fit(train, margin=0.0, max_outside=0)
    spec = InputPolicy(shape=(3,))
    check(spec, train[:10], profile)
    with pytest.raises(InvalidInput) as info:
        check(spec, [[0.5, 0.5, 0.5], [0.5, 7.0, 0.5]], profile)
    assert "profile" == info.value.check
    assert "feature 1 of row 1 is 7" in info.value.detail
    path = profile.save(tmp_path / "p.json")
    assert profile == Profile.load(path)


def test_profile_tolerates_what_holdout_shows() -> None:
    """max_outside fitted on a holdout lets held-out real rows through but not noise."""
    x_train, x_test, _, _ = digits_module("model").load_split()  # type: ignore[attr-defined]
    profile = Profile.fit(x_train)
    rejected = sum(
        profile.first_violation(x_test[i : i + 1]) is not None for i in range(len(x_test))
    )
    assert rejected / len(x_test) < 0.01
    noise = np.random.default_rng(0).uniform(0, 16, size=(200, 64))
    assert all(profile.first_violation(noise[i : i + 1]) is not None for i in range(200))


def test_profile_shape_must_match_policy() -> None:
    """A profile fitted for other rows is a startup error."""
    profile = Profile.fit(np.zeros((4, 2)))
    with pytest.raises(PolicyError, match="input.profile"):
        InputValidator(InputPolicy(shape=(3,)), profile)


def test_profile_load_errors_are_clear(tmp_path: Path) -> None:
    """Missing, malformed and inconsistent profile files name the problem."""
    with pytest.raises(PolicyError, match="file not found"):
        Profile.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"feature_shape": [2], "n_samples": 1, "lower": [0], "upper": [1, 2],'
        ' "mean": [0, 0], "std": [0, 0]}'
    )
    with pytest.raises(PolicyError, match="lower"):
        Profile.load(bad)


def test_profile_fit_refuses_bad_data() -> None:
    """Fitting on NaN or on a flat vector is refused."""
    with pytest.raises(ValueError, match="NaN"):
        Profile.fit(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="n_samples"):
        Profile.fit(np.array([1.0, 2.0]))


@settings(max_examples=300, deadline=None)
@given(
    rows=hnp.arrays(
        dtype=st.sampled_from([np.float64, np.float32, np.int64]),
        shape=st.tuples(st.integers(1, 4), st.just(3)),
    ),
    finite=st.booleans(),
)
def test_a_batch_passes_exactly_when_every_value_is_allowed(rows: np.ndarray, finite: bool) -> None:
    """A batch passes the finite and range checks exactly when every value is allowed."""
    spec = InputPolicy(shape=(3,), dtype="number", finite=finite, min=-5.0, max=5.0)
    values = rows.astype(np.float64)
    # finite: false lets NaN through (no comparison holds for it); infinities still
    # fall outside [min, max].
    allowed = bool(
        not (values < -5.0).any()
        and not (values > 5.0).any()
        and (not finite or np.isfinite(values).all())
    )
    try:
        InputValidator(spec)(QueryContext(endpoint="predict"), rows)
        passed = True
    except InvalidInput as refusal:
        passed = False
        assert refusal.check in {"finite", "range"}
    assert allowed == passed


@pytest.mark.parametrize("value", [[[]], [[], []], np.zeros((2, 0, 3))])
def test_rows_without_values_are_checked_not_crashed(value: object) -> None:
    """Rows of zero values (a policy without a shape) pass the value checks: nothing to check."""
    spec = InputPolicy(shape=None, dtype="float", min=0.0, max=1.0)
    ctx = check(spec, value)
    assert len(value) == ctx.rows  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "position"),
    [
        ([[0.1, 0.2, 0.3], [0.1, float("nan"), 0.3]], [1, 1]),
        ([[0.1, 0.2, 0.3], [0.1, 0.2, 7.0]], [1, 2]),
        ([[-1.0, 0.2, 0.3]], [0, 0]),
        ([[0.1, 0.2]], None),
    ],
)
def test_the_422_body_names_the_offending_position(
    value: list[list[float]], position: list[int] | None
) -> None:
    """``position`` in the body: [row, column] of the value at fault, null for a shape."""
    with pytest.raises(InvalidInput) as refused:
        check(SPEC, value)
    body = refused.value.body()
    assert position == body["position"]
    assert {"error", "detail", "check", "position"} == set(body)


def test_a_profile_refusal_names_the_row_and_feature() -> None:
    """A feature outside the profile's bounds: [row, feature]."""
    rows = np.random.default_rng(0).random((200, 3)) * 0.5
    profile = Profile.fit(rows)
    spec = InputPolicy(shape=(3,), dtype="float", min=0.0, max=1.0)
    with pytest.raises(InvalidInput) as refused:
        check(spec, [[0.2, 0.2, 0.2], [0.2, 0.99, 0.2]], profile)
    assert "profile" == refused.value.check
    assert [1, 1] == refused.value.body()["position"]


def test_a_passing_batch_is_returned_as_is(
    profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Integers, float32 and float64 rows pass unchanged; one decision, the rows counted."""
    _, x_test = digits
    spec = InputPolicy(shape=(64,), dtype="number", min=0.0, max=16.0, max_rows=2)
    validator = InputValidator(spec, profile)
    for value in (x_test[:2], x_test[:2].astype(np.int64), x_test[:2].astype(np.float32)):
        ctx = QueryContext(endpoint="predict")
        assert value is validator(ctx, value)
        assert 2 == ctx.rows
        assert [("validate", "pass", "2 rows")] == [
            (d.control, d.outcome, d.detail) for d in ctx.decisions
        ]
    with pytest.raises(InvalidInput, match="3 rows in one request; at most 2"):
        validator(QueryContext(endpoint="predict"), x_test[:3])


def test_the_policy_range_applies_inside_the_profile(profile: Profile) -> None:
    """A value the profile allows but the policy's max does not is a range refusal."""
    spec = InputPolicy(shape=(64,), dtype="float", min=0.0, max=15.0)
    row = np.asarray(profile.mean)[None, :].copy()
    check(spec, row, profile)
    feature = int(np.argmax(profile.upper))
    row[0, feature] = 15.5
    with pytest.raises(InvalidInput) as refused:
        check(spec, row, profile)
    assert "range" == refused.value.check
    assert [0, feature] == refused.value.body()["position"]


def test_image_profiles_name_the_pixel(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """Rows of (8, 8) images: real ones pass, noise is refused at [row, i, j] or [row]."""
    x_train, x_test = digits
    images = Profile.fit(x_train.reshape(-1, 8, 8))
    spec = InputPolicy(shape=(8, 8), dtype="float", min=0.0, max=16.0)
    check(spec, x_test.reshape(-1, 8, 8)[:5], images)
    noisy = x_test.reshape(-1, 8, 8) + np.random.default_rng(1).normal(0, 3, (450, 8, 8))
    with pytest.raises(InvalidInput) as refused:
        check(spec, np.clip(noisy, 0.0, 16.0), images)
    assert "profile" == refused.value.check
    assert len(refused.value.body()["position"]) in (1, 3)
