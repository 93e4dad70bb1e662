"""Rate limits and budgets through a real guarded app in process (memory and Redis)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import Policy, protect

from ..conftest import forget_bentoml_metrics, policy_dict

ROW = [1.0, 2.0, 0.5, 3.0]


def make_service(policy: Policy) -> Any:
    @protect(policy)
    @bentoml.service(name="limited")
    class Limited:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.tile([0.1, 0.9], (len(x), 1))

        @bentoml.api
        async def predict_async(self, x: np.ndarray) -> np.ndarray:
            return np.tile([0.1, 0.9], (len(x), 1))

    return Limited


@contextmanager
def serve(tier_keys: dict[str, str], **overrides: Any) -> Iterator[TestClient]:
    data = policy_dict(tier_keys)
    tiers = data["tiers"]
    assert isinstance(tiers, dict)
    tiers["public"] = {**tiers["public"], "rate_limit": overrides.pop("public_limit", "5/minute")}
    data.update(overrides)
    forget_bentoml_metrics()
    with TestClient(
        make_service(Policy.model_validate(data)).to_asgi(), raise_server_exceptions=False
    ) as client:
        yield client


def call(client: TestClient, key: str, rows: int = 1, path: str = "/predict") -> Any:
    return client.post(path, content=json.dumps({"x": [ROW] * rows}), headers={"X-API-Key": key})


@pytest.mark.parametrize("path", ["/predict", "/predict_async"])
def test_exactly_the_limit_is_admitted(tier_keys: dict[str, str], path: str) -> None:
    """5/minute admits five requests, then 429 with Retry-After and RateLimit-* headers."""
    with serve(tier_keys) as client:
        statuses = [call(client, tier_keys["public"], path=path).status_code for _ in range(8)]
        assert [200] * 5 + [429] * 3 == statuses
        refused = call(client, tier_keys["public"], path=path)
        body = refused.json()
        assert "rate_limited" == body["error"]
        assert "5 per 1 minute" in body["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        assert "5" == refused.headers["ratelimit-limit"]
        assert "0" == refused.headers["ratelimit-remaining"]
        # other tiers and other keys have their own counts
        assert 200 == call(client, tier_keys["trusted"], path=path).status_code


def test_every_guarded_response_carries_ratelimit_headers(tier_keys: dict[str, str]) -> None:
    """RateLimit-Remaining counts down on successful responses."""
    with serve(tier_keys) as client:
        remaining = [
            call(client, tier_keys["public"]).headers["ratelimit-remaining"] for _ in range(3)
        ]
        assert ["4", "3", "2"] == remaining


@pytest.mark.parametrize(
    "strategy", ["auto", "moving-window", "fixed-window", "sliding-window-counter"]
)
def test_rows_spend_the_budget(tier_keys: dict[str, str], strategy: str) -> None:
    """A batch of n rows spends n; a batch that would overrun is refused whole."""
    limits = {"strategy": strategy}
    with serve(tier_keys, public_limit="10/minute", rate_limiting=limits) as client:
        first = call(client, tier_keys["public"], rows=4)
        assert 200 == first.status_code
        assert "6" == first.headers["ratelimit-remaining"]
        too_many = call(client, tier_keys["public"], rows=7)
        assert 429 == too_many.status_code
        assert "needs" in too_many.json()["detail"]
        # The refused batch spent nothing: the 6 rows left are there to spend.
        assert 200 == call(client, tier_keys["public"], rows=6).status_code
        assert 429 == call(client, tier_keys["public"], rows=1).status_code


def test_a_batch_larger_than_the_window_is_explained(tier_keys: dict[str, str]) -> None:
    """A batch bigger than the whole limit says so."""
    with serve(tier_keys, public_limit="3/minute") as client:
        r = call(client, tier_keys["public"], rows=4)
        assert 429 == r.status_code
        assert "exceed the whole limit" in r.json()["detail"]


def test_several_windows_apply_at_once(tier_keys: dict[str, str]) -> None:
    """With '3/second;4/minute' the minute budget binds after the second window resets."""
    with serve(tier_keys, public_limit="3/second;4/minute") as client:
        statuses = [call(client, tier_keys["public"]).status_code for _ in range(4)]
        assert [200, 200, 200, 429] == statuses


def test_endpoint_limit_is_shared_by_all_callers(tier_keys: dict[str, str]) -> None:
    """A global per-endpoint limit counts every caller together."""
    with serve(tier_keys, rate_limiting={"endpoints": {"predict": "3/minute"}}) as client:
        got = [
            call(client, tier_keys[t]).status_code
            for t in ("trusted", "partner", "trusted", "partner")
        ]
        assert [200, 200, 200, 429] == got
        assert "endpoint 'predict'" in call(client, tier_keys["trusted"]).json()["detail"]
        assert 200 == call(client, tier_keys["trusted"], path="/predict_async").status_code


@pytest.mark.redis
def test_redis_storage_counts_the_same(tier_keys: dict[str, str], redis_url: str) -> None:
    """With storage redis://, limits hold exactly as in memory."""
    with serve(tier_keys, storage=redis_url) as client:
        statuses = [call(client, tier_keys["public"]).status_code for _ in range(7)]
        assert [200] * 5 + [429] * 2 == statuses


@pytest.mark.redis
@pytest.mark.parametrize(("mode", "expected"), [("closed", 503), ("open", 200)])
def test_redis_outage_follows_the_policy(
    tier_keys: dict[str, str], redis_server: Any, redis_url: str, mode: str, expected: int
) -> None:
    """Redis down: closed refuses with 503 storage_unavailable, open serves; both recover."""
    with serve(tier_keys, storage=redis_url, on_storage_error=mode) as client:
        assert 200 == call(client, tier_keys["public"]).status_code
        redis_server.stop()
        try:
            down = call(client, tier_keys["public"])
            assert expected == down.status_code
            if expected == 503:
                assert "storage_unavailable" == down.json()["error"]
        finally:
            redis_server.start()
        assert 200 == call(client, tier_keys["public"]).status_code
        assert "3" == call(client, tier_keys["public"]).headers["ratelimit-remaining"]


def test_refused_rows_are_spent(tier_keys: dict[str, str]) -> None:
    """Rows the input checks refuse are spent too: probing with bad rows is not free."""
    with serve(tier_keys, public_limit="10/minute") as client:
        bad = client.post(
            "/predict",
            content=json.dumps({"x": [[float("1e308") * 10] * len(ROW)] * 3}),
            headers={"X-API-Key": tier_keys["public"]},
        )
        assert 400 <= bad.status_code < 500 and 429 != bad.status_code
        answered = call(client, tier_keys["public"], rows=1)
        assert 200 == answered.status_code
        assert "6" == answered.headers["ratelimit-remaining"]  # 10 - 3 refused - 1 answered
