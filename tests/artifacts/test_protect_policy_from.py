"""protect(policy_from=<model>): a service guarded by the policy stored in its model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import GuardConfigError, attach, hash_key, protect
from bento_invguard.integration.guard import GUARD_ATTR
from bento_invguard.integration.middleware import GuardMiddleware

from ..conftest import forget_bentoml_metrics
from .conftest import PUBLIC_KEY, ROWS, save_model

pytestmark = pytest.mark.usefixtures("model_store")


def make_service(**protect_args: Any) -> Any:
    @protect(**protect_args)
    @bentoml.service
    class Scored:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            z = np.asarray(x, dtype=np.float64)
            return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)

    return Scored


@pytest.mark.parametrize("as_bento_model", [False, True])
def test_service_takes_the_attached_policy(policy_file: Path, as_bento_model: bool) -> None:
    """Every API is guarded by the model's policy, and the middleware is installed."""
    model = save_model()
    attach(model, policy_file)
    ref: Any = bentoml.models.BentoModel("clf:latest") if as_bento_model else "clf:latest"
    svc = make_service(policy_from=ref)
    pipeline = getattr(svc.apis["predict"].func, GUARD_ATTR)
    assert ["public", "trusted"] == list(pipeline.policy.tiers)
    assert pipeline.validator.profile is not None
    assert [GuardMiddleware] == [cls for cls, _ in svc.middlewares]


def test_attached_policy_answers_requests(
    policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served in process: no key is 401, the public key gets a one-hot label."""
    model = save_model()
    attach(model, policy_file)
    monkeypatch.setenv(
        "INVGUARD_KEYS", json.dumps([{"id": "p", "sha256": hash_key(PUBLIC_KEY), "tier": "public"}])
    )
    svc = make_service(policy_from="clf:latest")
    forget_bentoml_metrics()
    body = json.dumps({"x": ROWS[:3].tolist()})
    headers = {"content-type": "application/json"}
    with TestClient(svc.to_asgi(), raise_server_exceptions=False) as client:
        refused = client.post("/predict", content=body, headers=headers)
        answered = client.post(
            "/predict", content=body, headers={**headers, "Authorization": f"Bearer {PUBLIC_KEY}"}
        )
    assert 401 == refused.status_code
    assert "unauthenticated" == refused.json()["error"]
    assert 200 == answered.status_code, answered.text
    labels = np.array(answered.json())
    assert [1.0, 1.0, 1.0] == labels.sum(axis=1).tolist()
    assert set(np.unique(labels)) <= {0.0, 1.0}
    assert (ROWS[:3].argmax(axis=1) == labels.argmax(axis=1)).all()


def test_tampered_policy_refuses_to_start(policy_file: Path) -> None:
    """protect() fails at import, naming the model and the file that changed."""
    model = save_model()
    attach(model, policy_file)
    policy = Path(model.path) / "invguard" / "policy.yaml"
    policy.write_text(policy.read_text().replace("output: label", "output: full"))
    with pytest.raises(GuardConfigError) as caught:
        make_service(policy_from="clf:latest")
    assert str(model.tag) in str(caught.value)
    assert "policy.yaml does not match" in str(caught.value)


def test_policy_and_policy_from_together_are_refused(policy_file: Path) -> None:
    """One source of truth: a path and a model at once is a configuration error."""
    with pytest.raises(GuardConfigError, match="not both"):
        make_service(policy=policy_file, policy_from="clf:latest")


def test_model_without_a_policy_refuses_to_start() -> None:
    """policy_from= a model with nothing attached says so."""
    save_model()
    with pytest.raises(GuardConfigError, match="no invguard policy is attached"):
        make_service(policy_from="clf:latest")
