"""The monitor behind a real guarded app (in process): 403 blocked, degrade to label."""

from __future__ import annotations

import json
import logging
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import Policy, guard, protect

from ..conftest import forget_bentoml_metrics, policy_dict


def build(tier_keys: dict[str, str], **monitor: Any) -> Any:
    data = policy_dict(tier_keys, monitor=monitor)

    @protect(Policy.model_validate(data))
    @bentoml.service(name="watched")
    class Watched:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=float)
            z = np.stack([x[:, 0], x[:, 1], x[:, 2] * 0.5, x[:, 3] * 0.2], axis=1)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

    return Watched


def build_guard_alone(tier_keys: dict[str, str]) -> Any:
    """The same service with @guard only: no middleware in front of the API."""
    policy = Policy.model_validate(policy_dict(tier_keys, monitor={}))

    @bentoml.service(name="watched_alone")
    class WatchedAlone:
        @bentoml.api
        @guard(policy)
        def predict(self, x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=float)
            z = np.stack([x[:, 0], x[:, 1], x[:, 2] * 0.5, x[:, 3] * 0.2], axis=1)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

    return WatchedAlone


def probe_stream(n: int) -> list[list[float]]:
    rng = np.random.default_rng(0)
    base = np.array([5.0, 5.0, 5.0, 5.0])
    return [list(np.clip(base + rng.normal(0, 0.05, 4), 0, 10)) for _ in range(n)]


def post(client: TestClient, key: str, row: list[float]) -> Any:
    return client.post("/predict", content=json.dumps({"x": [row]}), headers={"X-API-Key": key})


def test_probing_key_gets_403_blocked_and_others_are_served(
    tier_keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """After probing (near-duplicates the shared view judges probing), the key is refused
    with 403 blocked (Retry-After); others still pass. The log names the key's id once per
    escalation step, never the key itself."""
    forget_bentoml_metrics()
    caplog.set_level(logging.WARNING, logger="bento_invguard")
    with TestClient(build(tier_keys).to_asgi(), raise_server_exceptions=False) as client:
        statuses = [post(client, tier_keys["trusted"], row).status_code for row in probe_stream(60)]
        assert 403 in statuses
        first_block = statuses.index(403)
        assert first_block < 40
        assert all(s == 403 for s in statuses[first_block:])
        refused = post(client, tier_keys["trusted"], [1.0, 2.0, 3.0, 4.0])
        body = refused.json()
        assert "blocked" == body["error"] and "blocked for" in body["detail"]
        assert int(refused.headers["retry-after"]) > 0
        assert 200 == post(client, tier_keys["partner"], [1.0, 2.0, 3.0, 4.0]).status_code
    escalations = [
        r.getMessage() for r in caplog.records if "principal 'user-trusted'" in r.getMessage()
    ]
    assert 1 == len([m for m in escalations if "blocked for" in m])
    assert not any(tier_keys["trusted"] in r.getMessage() for r in caplog.records)


def test_degraded_principal_sees_labels_only(tier_keys: dict[str, str]) -> None:
    """With blocking off, a probing trusted key drops to label-only answers."""
    forget_bentoml_metrics()
    service = build(tier_keys, actions={"block": False})
    with TestClient(service.to_asgi(), raise_server_exceptions=False) as client:
        answers = [
            np.array(post(client, tier_keys["trusted"], row).json()) for row in probe_stream(60)
        ]
        assert not set(np.unique(answers[0])) <= {0.0, 1.0}  # full scores at first
        assert set(np.unique(answers[-1])) <= {0.0, 1.0}  # labels once degraded


def test_guard_alone_refuses_a_blocked_key(tier_keys: dict[str, str]) -> None:
    """Without @protect's middleware, @guard itself refuses a key the monitor blocked."""
    forget_bentoml_metrics()
    app = build_guard_alone(tier_keys).to_asgi()
    with TestClient(app, raise_server_exceptions=False) as client:
        statuses = [post(client, tier_keys["trusted"], row).status_code for row in probe_stream(60)]
        first_block = statuses.index(403)
        assert all(s == 403 for s in statuses[first_block:])
        refused = post(client, tier_keys["trusted"], [1.0, 2.0, 3.0, 4.0]).json()
        # Refused at admission, before the model, by the block itself.
        assert "blocked" == refused["error"] and "after probing was detected" in refused["detail"]
        assert 200 == post(client, tier_keys["partner"], [1.0, 2.0, 3.0, 4.0]).status_code
