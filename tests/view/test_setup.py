"""Which thresholds and store a policy's shared view gets, and when it is off (and why)."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest

from bento_invguard import Policy, Profile
from bento_invguard.reference import Thresholds
from bento_invguard.view import MemoryViewStore
from bento_invguard.view.setup import open_shared_view, view_thresholds


def policy(input: dict[str, Any] | None = None, **monitor: Any) -> Policy:
    return Policy.model_validate(
        {"tiers": {"public": {}}, "input": input or {}, "monitor": monitor}
    )


def test_the_profile_calibrates_for_half_the_policy_rate(profile: Profile) -> None:
    """Without a radius in the policy, the profile's calibration gives the thresholds for
    half the policy's false-positive rate and the policy's view size."""
    neighbours = profile.calibration.neighbours  # type: ignore[union-attr]
    expected = neighbours.thresholds(1e-3 / 2, 5000)
    assert expected == view_thresholds(
        policy(target_false_positive_rate=1e-3, view={"size": 5000}), profile
    )


def test_the_policy_overrides_the_calibration(profile: Profile) -> None:
    """monitor.view.radius and cluster_size, when set, win over the calibration."""
    set_both = policy(view={"radius": 1.5, "cluster_size": 4})
    assert Thresholds(radius=1.5, cluster_size=4) == view_thresholds(set_both, profile)


def test_without_a_profile_the_input_range_gives_the_radius() -> None:
    """No profile: 1 % of the input range's diagonal, cluster size 3."""
    found = view_thresholds(policy({"shape": [64], "min": 0, "max": 16}), None)
    assert Thresholds(radius=0.01 * 16 * math.sqrt(64), cluster_size=3) == found


def test_without_a_way_to_tell_the_view_is_off_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No profile, no range, no radius: no view, and a WARNING that says what it needs."""
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        assert open_shared_view(policy(), None, lambda: "v1") is None
    assert 1 == len(caplog.records)
    assert "monitor.view.radius" in caplog.records[0].getMessage()


def test_memory_storage_opens_a_memory_view(profile: Profile) -> None:
    """memory:// (the default) keeps the view in this process, of the policy's size."""
    view = open_shared_view(policy(view={"size": 256}), profile, lambda: "v1")
    assert view is not None
    store = view.store
    assert isinstance(store, MemoryViewStore)
    assert 256 == len(store.ring)


def test_a_disabled_monitor_has_no_view(profile: Profile) -> None:
    """monitor.enabled: false turns the shared view off too."""
    assert open_shared_view(policy(enabled=False), profile, lambda: "v1") is None
