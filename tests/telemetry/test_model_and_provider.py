"""Model identity on spans, and which tracer provider the guard uses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import protect
from bento_invguard.bentoml_bridge import bentoml_tracer_provider
from bento_invguard.telemetry import attributes as a
from bento_invguard.telemetry.tracing import QueryTracer

from ..conftest import forget_bentoml_metrics
from .helpers import ROW, make_otel, recorder_of, scores, telemetry_policy

MODEL_NAME = "invguard_telemetry_model"


@pytest.fixture(scope="module")
def stored_model() -> Any:
    """A real model in the (temporary) BentoML model store."""
    with bentoml.models.create(MODEL_NAME, metadata={"purpose": "test"}) as model:
        Path(model.path_of("weights.txt")).write_text("w")
    return bentoml.models.get(f"{MODEL_NAME}:latest")


@pytest.fixture(scope="module")
def client_and_otel(
    stored_model: Any, keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Any, Any]]:
    otel = make_otel()
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    policy = telemetry_policy(keys, audit={"path": str(audit)})

    @protect(policy, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    @bentoml.service
    class WithModel:
        model_ref = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return scores(x)

    forget_bentoml_metrics()
    with TestClient(WithModel.to_asgi()) as client:
        yield client, otel, (WithModel, audit)


def test_span_and_audit_name_the_served_model(
    client_and_otel: tuple[TestClient, Any, Any], stored_model: Any, keys: dict[str, str]
) -> None:
    """Tag, version and creation time of the service's model, read from the model store."""
    client, otel, (service, audit) = client_and_otel
    r = client.post(
        "/predict",
        content=json.dumps({"x": [ROW]}),
        headers={"Authorization": f"Bearer {keys['public']}", "content-type": "application/json"},
    )
    assert 200 == r.status_code
    (span,) = otel.finished()
    attrs = dict(span.attributes or {})
    assert str(stored_model.tag) == attrs[a.MODEL_TAG]
    assert stored_model.tag.version == attrs[a.MODEL_VERSION]
    created = datetime.fromisoformat(attrs[a.MODEL_CREATED])
    assert stored_model.info.creation_time.replace(microsecond=0) == created.replace(
        microsecond=0, tzinfo=stored_model.info.creation_time.tzinfo
    )
    assert 0.0 <= attrs[a.MODEL_AGE_DAYS] < 1.0
    assert recorder_of(service).flush(10.0)
    record = json.loads(audit.read_text().splitlines()[-1])
    assert str(stored_model.tag) == record["model"]["tag"]


def test_default_provider_is_bentomls_own() -> None:
    """Without a provider passed, the span comes from BentoML's tracer provider."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    provider = bentoml_tracer_provider()
    assert provider is not None and provider is BentoMLContainer.tracer_provider.get()
    tracer: Any = QueryTracer(None, under_bentoml=True).tracer
    assert provider.resource is tracer.resource


def test_a_passed_provider_wins() -> None:
    """A provider passed to protect()/guard() is used even inside BentoML."""
    otel = make_otel()
    tracer: Any = QueryTracer(otel.tracer_provider, under_bentoml=True).tracer
    assert otel.tracer_provider.resource is tracer.resource
