"""Storage configuration: URIs, environment overrides, clear startup errors, warnings."""

from __future__ import annotations

import logging

import bentoml
import numpy as np
import pytest

from bento_invguard import GuardConfigError, Policy, PolicyError, protect
from bento_invguard.policy import policy_from_mapping
from bento_invguard.storage import open_async_storage, redacted, storage_uri

from ..conftest import policy_dict


def test_environment_overrides_and_expands(
    tier_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """INVGUARD_STORAGE replaces the URI; ${VAR} in it is expanded from the environment."""
    policy = Policy.model_validate(policy_dict(tier_keys, storage="redis://:${PW}@cache:6379/0"))
    assert "redis://:s3cret@cache:6379/0" == storage_uri(policy, {"PW": "s3cret"})
    with pytest.raises(GuardConfigError, match="not set"):
        storage_uri(policy, {})
    monkeypatch.setenv("INVGUARD_STORAGE", "memory://")
    assert "memory://" == storage_uri(policy, {})


def test_passwords_are_redacted() -> None:
    """A URI shown in a log or error never shows its password."""
    assert "redis://***@cache:6379/0" == redacted("redis://:s3cret@cache:6379/0")


def test_unknown_storage_scheme_is_a_startup_error(tier_keys: dict[str, str]) -> None:
    """An unsupported scheme fails when the storage is opened, naming it."""
    policy = Policy.model_validate(policy_dict(tier_keys, storage="ftp://nowhere"))
    with pytest.raises(GuardConfigError, match="ftp://nowhere"):
        open_async_storage(policy)


@pytest.mark.parametrize("bad", ["10 per fortnight", "lots", ""])
def test_bad_limit_strings_name_the_field(tier_keys: dict[str, str], bad: str) -> None:
    """A rate limit the limits library cannot parse names the tier's field."""
    data = policy_dict(tier_keys)
    data["tiers"]["public"]["rate_limit"] = bad  # type: ignore[index]
    with pytest.raises(PolicyError, match="tiers.public.rate_limit"):
        policy_from_mapping(data)


def test_memory_storage_with_several_workers_warns(
    tier_keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """memory:// with workers=2 warns that each worker counts on its own."""
    policy = Policy.model_validate(policy_dict(tier_keys))
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):

        @protect(policy)
        @bentoml.service(workers=2)
        class TwoWorkers:
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x

    assert "each worker counts rate limits" in caplog.text
