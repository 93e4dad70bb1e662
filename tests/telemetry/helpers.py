"""Real OpenTelemetry SDK providers and a small guarded service (telemetry and audit tests)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from starlette.testclient import TestClient

from bento_invguard import Policy, generate_key, hash_key, protect
from bento_invguard.integration.guard import GUARD_ATTR
from bento_invguard.integration.recorder import Recorder

from ..conftest import forget_bentoml_metrics

TIERS = ("public", "trusted", "limited")
ROW = [1.0, 2.0, 0.5, 3.0]
WEIGHTS = np.arange(20, dtype=np.float64).reshape(4, 5) / 10.0


def scores(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) @ WEIGHTS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def telemetry_policy(keys: dict[str, str], **overrides: Any) -> Policy:
    """public: label on predict only; trusted: full everywhere; limited: 1 query a minute."""
    data: dict[str, Any] = {
        "keys": [{"id": f"user-{t}", "sha256": hash_key(k), "tier": t} for t, k in keys.items()],
        "keys_from": {"env": None},
        "tiers": {
            "public": {"output": "label", "endpoints": ["predict"]},
            "trusted": {"output": "full"},
            "limited": {"output": "label", "rate_limit": "1/minute"},
        },
        "input": {"shape": [4], "min": 0.0, "max": 10.0, "max_body_bytes": 4096},
    }
    data.update(overrides)
    return Policy.model_validate(data)


def build_service(policy: Policy, **protect_options: Any) -> Any:
    """A fresh guarded service: predict, admin (trusted only) and crash (raises)."""

    @protect(policy, **protect_options)
    @bentoml.service
    class Telemetered:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return scores(x)

        @bentoml.api
        def admin(self, x: np.ndarray) -> np.ndarray:
            return scores(x)

        @bentoml.api
        def crash(self, x: np.ndarray) -> np.ndarray:
            raise RuntimeError("the model failed")

    return Telemetered


def recorder_of(service: Any) -> Recorder:
    """The recorder @protect gave the service (shared by its middleware and its APIs)."""
    recorder: Recorder = getattr(service.apis["predict"].func, GUARD_ATTR).recorder
    return recorder


@dataclass
class Otel:
    """In-memory trace and metric pipelines of the real OpenTelemetry SDK."""

    spans: InMemorySpanExporter
    tracer_provider: TracerProvider
    reader: InMemoryMetricReader
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == "invguard.query"]

    def points(self, metric: str) -> list[Any]:
        """Every data point of ``metric`` collected so far (cumulative)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        found.extend(m.data.data_points)
        return found


def make_otel() -> Otel:
    """Providers as a user would pass them; ALWAYS_ON because BentoML's own server span
    is unsampled in-process (tracing.sample_rate defaults to 0) and a parent-based
    sampler would drop its children."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_ON)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    return Otel(spans, tracer_provider, reader, MeterProvider(metric_readers=[reader]))


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {tier: generate_key() for tier in TIERS}


@dataclass
class Served:
    """A guarded service under a TestClient, with its telemetry."""

    client: TestClient
    service: Any
    otel: Otel
    keys: dict[str, str]
    audit_path: Path

    @property
    def recorder(self) -> Recorder:
        return recorder_of(self.service)

    def post(self, path: str, rows: Any = None, *, tier: str | None = None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if tier is not None:
            headers["Authorization"] = f"Bearer {self.keys[tier]}"
        if rows is not None:
            kwargs["content"] = json.dumps({"x": rows})
            headers.setdefault("content-type", "application/json")
        return self.client.post(path, headers=headers, **kwargs)

    def audit_records(self) -> list[dict[str, Any]]:
        assert self.recorder.flush(10.0)
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[..., Served]]:
    """Builds and serves guarded services; closes every client at the end of the module."""
    opened: list[TestClient] = []

    def start(policy: Policy, keys: dict[str, str], audit_path: Path, **options: Any) -> Served:
        otel = make_otel()
        service = build_service(
            policy,
            tracer_provider=otel.tracer_provider,
            meter_provider=otel.meter_provider,
            **options,
        )
        forget_bentoml_metrics()
        client = TestClient(service.to_asgi(), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return Served(client, service, otel, keys, audit_path)

    yield start
    for client in opened:
        client.__exit__(None, None, None)
