"""The validator's fast accept only ever says yes where the exact checks pass.

``ProfileCheck.fast_accept`` lets the common row (real data, one per request)
skip the policy's finite and range checks and the exact profile checks. Its
"yes" must imply theirs for every row, and the validator's answer (pass, or
the refusal and its detail) must be the same with and without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bento_invguard import InvalidInput, Profile
from bento_invguard.context import QueryContext
from bento_invguard.policy import InputPolicy
from bento_invguard.validation import InputValidator

SPEC = InputPolicy(shape=[64], dtype="float", min=0.0, max=16.0)


def verdict(validator: InputValidator, rows: np.ndarray) -> tuple[str, str] | None:
    try:
        validator(QueryContext(endpoint="predict"), rows)
    except InvalidInput as refusal:
        return refusal.check, refusal.detail
    return None


def exact(profile: Profile, spec: InputPolicy = SPEC) -> InputValidator:
    validator = InputValidator(spec, profile)
    validator._fast_accept = None  # the checks as they are without the shortcut
    return validator


def test_real_rows_take_the_fast_path(
    profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Nearly all held-out digits pass the fast accept: the shortcut is used.

    The profile lets a row have ``max_outside`` features outside the bounds;
    such rows (a few of the 450) are left to the exact checks, which pass them.
    """
    _, x_test = digits
    accept = profile.check.fast_accept(SPEC.min, SPEC.max)
    assert accept is not None
    fast = [i for i in range(len(x_test)) if accept(x_test[i : i + 1])]
    assert len(fast) >= 0.95 * len(x_test)
    assert profile.check.max_outside > 0
    assert all(accept(x_test[i : i + 1]) for i in fast)
    assert accept(x_test[fast])
    assert not accept(x_test)  # a batch with one row outside the bounds goes exact


def test_rows_near_the_distance_limit_agree(
    profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Rows on a line from the data's mean outwards cross the limit: same answers both ways."""
    _, x_test = digits
    fast, slow = InputValidator(SPEC, profile), exact(profile)
    mean = np.asarray(profile.mean)
    crossed = 0
    for row in x_test[:20]:
        for t in np.linspace(0.0, 4.0, 81):
            candidate = np.clip(mean + t * (row - mean), 0.0, 16.0)[None, :]
            answer = verdict(slow, candidate)
            assert verdict(fast, candidate) == answer
            crossed += answer is not None
    assert crossed > 0  # the line does leave the profile


rows_of_values = st.lists(
    st.one_of(
        st.floats(min_value=-2.0, max_value=18.0),
        st.sampled_from([0.0, 16.0, -0.0, np.nextafter(0.0, -1), np.nextafter(16.0, 17)]),
        st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308]),
    ),
    min_size=64,
    max_size=64,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rows_of_values, min_size=1, max_size=3), st.integers(0, 449), st.data())
def test_fast_and_exact_validators_agree(
    profile: Profile,
    digits: tuple[np.ndarray, np.ndarray],
    rows: list[list[float]],
    base: int,
    data: Any,
) -> None:
    """Random rows, and real rows with a few values replaced: same verdict and detail."""
    _, x_test = digits
    fast, slow = InputValidator(SPEC, profile), exact(profile)
    arbitrary = np.asarray(rows, dtype=np.float64)
    assert verdict(fast, arbitrary) == verdict(slow, arbitrary)
    real = x_test[base : base + len(rows)].copy()
    for r, row in enumerate(rows):
        at = data.draw(st.lists(st.integers(0, 63), max_size=3, unique=True))
        real[r % len(real), at] = np.asarray(row)[at]
    assert verdict(fast, real) == verdict(slow, real)


def test_fast_accept_implies_the_exact_checks(
    profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Over many perturbed real rows, every fast yes is an exact yes.

    The two differ only on rows the exact checks pass with a few features
    outside the bounds (``max_outside``), which the fast accept leaves to them.
    """
    _, x_test = digits
    check = profile.check
    accept = check.fast_accept(SPEC.min, SPEC.max)
    assert accept is not None
    rng = np.random.default_rng(7)
    yes = differ = 0
    for scale in (0.0, 0.5, 1.0, 2.0, 4.0):
        rows = x_test + scale * rng.standard_normal(x_test.shape)
        for i in range(len(rows)):
            row = rows[i : i + 1]
            in_range = bool(np.isfinite(row).all() and row.min() >= 0.0 and row.max() <= 16.0)
            exact_yes = in_range and check.first_violation(row) is None
            if accept(row):
                assert exact_yes
                yes += 1
            elif exact_yes:
                outside = int(((row < check.lo) | (row > check.hi)).sum())
                assert 1 <= outside <= check.max_outside
                differ += 1
    assert yes > 400 and differ < 0.05 * yes


def test_narrower_policy_range_is_applied(profile: Profile) -> None:
    """A value inside the profile but outside the policy's [min, max] is not fast-accepted."""
    spec = InputPolicy(shape=[64], dtype="float", min=0.0, max=15.0)
    accept = profile.check.fast_accept(spec.min, spec.max)
    assert accept is not None
    row = np.asarray(profile.mean)[None, :].copy()
    assert accept(row)
    row[0, int(np.argmax(profile.upper))] = 15.5
    assert not accept(row)
    fast, slow = InputValidator(spec, profile), exact(profile, spec)
    assert verdict(fast, row) == verdict(slow, row)
    assert verdict(fast, row) is not None


def test_images_with_a_multidimensional_feature_shape(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    """Profiles of (8, 8) images: the same answers as the exact checks."""
    x_train, x_test = digits
    images = Profile.fit(x_train.reshape(-1, 8, 8))
    spec = InputPolicy(shape=[8, 8], dtype="float", min=0.0, max=16.0)
    fast, slow = InputValidator(spec, images), exact(images, spec)
    assert fast._fast_accept is not None
    assert fast._fast_accept(x_test.reshape(-1, 8, 8)[:1])  # the shortcut is taken for images
    noisy = x_test.reshape(-1, 8, 8) + np.random.default_rng(1).normal(0, 3, (450, 8, 8))
    for batch in (x_test.reshape(-1, 8, 8)[:5], x_test.reshape(-1, 8, 8)[:1], noisy[:1], noisy):
        assert verdict(fast, batch) == verdict(slow, batch)


def test_the_fast_path_keeps_the_shape_dtype_and_row_limits(
    profile: Profile, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """Arrays the fast path must leave to the checks get the checks' verdict."""
    _, x_test = digits
    spec = InputPolicy(shape=[64], dtype="float", min=0.0, max=16.0, max_rows=2)
    fast, slow = InputValidator(spec, profile), exact(profile, spec)
    real = x_test[:3]
    cases = {
        "too many rows": real,
        "no rows": real[:0],
        "one value": np.float64(3.0),
        "one row, unbatched": real[0],
        "a row too short": real[:1, :63],
        "a row with an extra axis": real[:1, :, np.newaxis],
        "integers": real[:2].astype(np.int64),
        "float32": real[:2].astype(np.float32),
        "strings": real[:1].astype(str),
        "booleans": real[:1] > 3,
    }
    for name, value in cases.items():
        assert verdict(fast, value) == verdict(slow, value), name
    assert verdict(fast, real) == ("shape", "shape: 3 rows in one request; at most 2")
    for value in (real[:2], real[:2].astype(np.int64), real[:2].astype(np.float32)):
        ctx = QueryContext(endpoint="predict")
        assert fast(ctx, value) is value
        assert ctx.rows == 2
        assert [(d.control, d.outcome, d.detail) for d in ctx.decisions] == [
            ("validate", "pass", "2 rows")
        ]
