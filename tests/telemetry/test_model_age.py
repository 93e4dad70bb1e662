"""Model hygiene: the served model's age is exported, and a stale model warns."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from bento_invguard import Policy
from bento_invguard.integration.recorder import Recorder
from bento_invguard.telemetry import TelemetryOptions
from bento_invguard.telemetry.model_info import ModelInfo


class _Stored:
    """Stands for a bentoml.models.Model: a tag and an info with a creation time."""

    def __init__(self, days_old: float) -> None:
        from bentoml import Tag

        self.tag = Tag("faces", "v7")
        self.info = type(
            "Info", (), {"creation_time": datetime.now(timezone.utc) - timedelta(days=days_old)}
        )()


def recorder(days_old: float, limit: float | None) -> Recorder:
    policy = Policy.model_validate(
        {"tiers": {"public": {}}, "max_model_age_days": limit, "audit": {"sink": "none"}}
    )
    return Recorder(policy, TelemetryOptions(models=[_Stored(days_old)]))


def test_stale_model_warns_and_is_exported(caplog: pytest.LogCaptureFixture) -> None:
    """A model older than max_model_age_days logs a warning naming it; its age is returned."""
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        days = recorder(45, 30).check_model_age()
    assert days is not None and 44.9 < days < 45.1
    assert "faces:v7 is 45 days old" in caplog.text
    from prometheus_client import REGISTRY

    assert 1.0 == REGISTRY.get_sample_value("invguard_model_stale", {"model": "faces:v7"})


def test_fresh_model_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    """A model within the limit (or with no limit) is quiet."""
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        recorder(5, 30).check_model_age()
        recorder(500, None).check_model_age()
    assert "days old" not in caplog.text


def test_model_info_age() -> None:
    """ModelInfo.age_days counts from the creation time."""
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert 31.0 == ModelInfo("m:1", "1", created).age_days(
        datetime(2026, 2, 1, tzinfo=timezone.utc)
    )
