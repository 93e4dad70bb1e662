"""A real ``bentoml serve`` of the digits example exporting OTLP/HTTP traces to a receiver.

BentoML's tracing is configured as a user would (a configuration file in
``BENTOML_CONFIG``); the receiver decodes the protobuf export. Checked: the
invguard.query span of allowed and rejected queries with its attributes, its
parent (BentoML's server span), the audit record of the same span, the
invguard metrics on ``/metrics``, and that a collector that never answers
does not slow requests down.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from benchmarks.support.serving import (
    HOST,
    bentoml_command,
    copy_example,
    free_port,
    load_module,
    stop_process_tree,
    train,
    wait_ready,
)
from prometheus_client.parser import text_string_to_metric_families

from bento_invguard import generate_key, hash_key
from bento_invguard.telemetry import attributes as a

from ..end_to_end.conftest import TIERS
from .otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SpanKind.SPAN_KIND_SERVER
ERROR_STATUS = 2  # Status.StatusCode.STATUS_CODE_ERROR
#: Added latency a hung collector may cause, at most (it should cause none).
DEAD_COLLECTOR_BOUND_S = 0.25

TRACING_CONFIG = """\
services:
  tracing:
    exporter_type: otlp
    sample_rate: 1.0
    timeout: 2
    otlp:
      protocol: http
      endpoint: {endpoint}
"""


@dataclass
class TracedServer:
    """The served example, one key per tier (principal ``it-<tier>``), its files and log."""

    client: httpx.Client
    keys: dict[str, str]
    x_test: np.ndarray
    home: Path
    log_path: Path

    def post(self, path: str, *, json_body: Any, tier: str | None = None) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if tier is not None:
            headers["Authorization"] = f"Bearer {self.keys[tier]}"
        return self.client.post(path, content=json.dumps(json_body), headers=headers)

    def log_tail(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def traced(
    collector: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TracedServer]:
    """The digits example served with tracing to ``collector`` (spans exported every 100 ms)."""
    root = tmp_path_factory.mktemp("traced_serve")
    app_dir = copy_example(root / "digits")
    home = root / "bentoml_home"
    home.mkdir()
    keys = {tier: generate_key() for tier in TIERS}
    config = root / "bentoml_configuration.yaml"
    config.write_text(TRACING_CONFIG.format(endpoint=collector.endpoint))
    env = dict(os.environ)
    env.pop("INVGUARD_POLICY", None)
    env.update(
        BENTOML_HOME=str(home),
        BENTOML_DO_NOT_TRACK="True",
        BENTOML_CONFIG=str(config),
        OTEL_BSP_SCHEDULE_DELAY="100",
        PYTHONUNBUFFERED="1",
        INVGUARD_KEYS=json.dumps(
            [{"id": f"it-{t}", "sha256": hash_key(k), "tier": t} for t, k in keys.items()]
        ),
    )
    train(app_dir, env, root / "train.log")
    _, x_test, _, _ = load_module(app_dir / "model.py", "invguard_telemetry_digits").load_split()

    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log_path = root / "serve.log"
    command = [*bentoml_command(), "serve", "service:DigitsClassifier"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--host", HOST, "--port", str(port)],
            cwd=app_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(proc, base_url, log_path)
        with httpx.Client(base_url=base_url, timeout=15.0) as client:
            yield TracedServer(client, keys, x_test, home, log_path)
    finally:
        collector.release()
        stop_process_tree(proc)


def digest(rows: Any) -> str:
    return hashlib.sha256(np.asarray(rows, dtype=np.float64).tobytes()).hexdigest()


def invguard_span(collector: OtlpReceiver, **attrs: Any) -> ReceivedSpan:
    """The one invguard.query span whose attributes include ``attrs``."""
    found = collector.wait_for(
        lambda s: s.name == a.SPAN_NAME and all(s.attributes.get(k) == v for k, v in attrs.items())
    )
    assert 1 == len(found), f"{attrs}: {[s.attributes for s in found]}"
    return found[0]


def test_allowed_query_span_reaches_the_collector(
    traced: TracedServer, collector: OtlpReceiver
) -> None:
    """principal, tier, decision, digest, rows, output mode, predicted class, model, status."""
    row = traced.x_test[:1].tolist()
    response = traced.post("/predict", tier="public", json_body={"x": row})
    assert 200 == response.status_code, response.text
    span = invguard_span(collector, **{a.INPUT_SHA256: digest(row)})
    attrs = span.attributes
    assert "it-public" == attrs[a.PRINCIPAL]
    assert "public" == attrs[a.TIER]
    assert "predict" == attrs[a.ENDPOINT]
    assert a.ALLOW == attrs[a.DECISION]
    assert 200 == attrs[a.HTTP_STATUS]
    assert 1 == attrs[a.INPUT_ROWS]
    assert "label" == attrs[a.OUTPUT_MODE]
    assert [int(np.argmax(response.json()[0]))] == attrs[a.PREDICTED]
    assert attrs[a.MODEL_TAG].startswith("invguard_digits:")
    assert attrs[a.MODEL_TAG].endswith(attrs[a.MODEL_VERSION])
    assert a.MODEL_CREATED in attrs and a.ERROR_TYPE not in attrs
    assert "access:authenticated:public" == attrs[a.DECISIONS][0]
    assert [] == span.events  # routine decisions are listed, not events
    assert ERROR_STATUS != span.status_code
    assert "digits_classifier" == span.resource.get("service.name")
    assert all(key not in json.dumps(attrs) for key in traced.keys.values())


def test_invguard_span_is_a_child_of_bentomls_server_span(
    traced: TracedServer, collector: OtlpReceiver
) -> None:
    """The parent is the SERVER span of BentoML's OpenTelemetry middleware, same trace."""
    row = traced.x_test[1:2].tolist()
    assert 200 == traced.post("/predict", tier="partner", json_body={"x": row}).status_code
    span = invguard_span(collector, **{a.INPUT_SHA256: digest(row)})
    parents = collector.wait_for(lambda s: s.span_id == span.parent_span_id)
    assert 1 == len(parents)
    parent = parents[0]
    assert SERVER_KIND == parent.kind
    assert "opentelemetry.instrumentation.asgi" == parent.scope
    assert "POST /predict" == parent.name
    assert span.trace_id == parent.trace_id


@pytest.mark.parametrize(
    ("tier", "path", "row", "status", "reason"),
    [
        (None, "/predict", None, 401, "unauthenticated"),
        ("public", "/logits", None, 403, "forbidden"),
        ("trusted", "/predict", [[20.0] * 64], 422, "invalid_input"),
    ],
)
def test_rejections_are_spans_with_error_type(
    traced: TracedServer,
    collector: OtlpReceiver,
    tier: str | None,
    path: str,
    row: Any,
    status: int,
    reason: str,
) -> None:
    """Each rejection: decision reject, error.type = the contract's reason, status unset."""
    before = {s.span_id for s in collector.spans}
    response = traced.post(path, tier=tier, json_body={"x": row or traced.x_test[:1].tolist()})
    assert status == response.status_code, response.text
    found = collector.wait_for(
        lambda s: (
            s.name == a.SPAN_NAME
            and s.span_id not in before
            and s.attributes.get(a.ERROR_TYPE) == reason
        )
    )
    assert 1 == len(found)
    attrs = found[0].attributes
    assert a.REJECT == attrs[a.DECISION]
    assert status == attrs[a.HTTP_STATUS]
    assert (f"it-{tier}" if tier else None) == attrs.get(a.PRINCIPAL)
    assert ERROR_STATUS != found[0].status_code


def test_audit_record_of_a_query_names_its_span(
    traced: TracedServer, collector: OtlpReceiver
) -> None:
    """The default jsonl audit trail (under BENTOML_HOME) links each record to its span."""
    row = traced.x_test[2:3].tolist()
    traced.post("/predict", tier="trusted", json_body={"x": row})
    span = invguard_span(collector, **{a.INPUT_SHA256: digest(row)})
    home = traced.home
    deadline = time.monotonic() + 10
    record: dict[str, Any] | None = None
    while record is None and time.monotonic() < deadline:
        for path in home.glob("invguard/audit/audit.*.jsonl"):
            for line in path.read_text().splitlines():
                candidate = json.loads(line)
                if candidate["span_id"] == span.span_id:
                    record = candidate
        time.sleep(0.05)
    assert record is not None, traced.log_tail()
    assert span.trace_id == record["trace_id"]
    assert digest(row) == record["input"]["sha256"]
    assert "raw" not in record


def test_metrics_endpoint_serves_invguard_metrics(traced: TracedServer) -> None:
    """/metrics (open, no key) has the request counter, latency and risk histograms."""
    traced.post("/predict", tier="public", json_body={"x": traced.x_test[:1].tolist()})
    traced.post("/predict", json_body={"x": traced.x_test[:1].tolist()})
    text = traced.client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    allowed = {"decision": "allow", "reason": "none", "tier": "public", "endpoint": "predict"}
    refused = {"decision": "reject", "reason": "unauthenticated", "tier": "none"}
    assert value("invguard_requests_total", **allowed) >= 1
    assert value("invguard_requests_total", **refused, endpoint="predict") >= 1
    assert value("invguard_guard_duration_seconds_count", decision="allow", endpoint="predict") >= 1
    assert value("invguard_risk_score_count", tier="public", endpoint="predict") >= 1
    assert ("invguard_blocked_principals", ()) in samples


def test_a_dead_collector_does_not_slow_requests(
    traced: TracedServer, collector: OtlpReceiver
) -> None:
    """With the collector accepting exports and never answering, latency stays put."""
    body = {"x": traced.x_test[:1].tolist()}

    def latencies(n: int) -> list[float]:
        out = []
        for _ in range(n):
            started = time.perf_counter()
            assert 200 == traced.post("/predict", tier="trusted", json_body=body).status_code
            out.append(time.perf_counter() - started)
            time.sleep(0.01)  # spread over several export intervals
        return out

    healthy = latencies(30)
    exports_before = collector.requests
    collector.hang()
    try:
        hung = latencies(60)
        stuck_exports = collector.requests - exports_before
    finally:
        collector.release()
    assert stuck_exports >= 1  # the exporter did send, and was left hanging
    healthy_median, hung_median = statistics.median(healthy), statistics.median(hung)
    assert hung_median < healthy_median + DEAD_COLLECTOR_BOUND_S / 5, (healthy_median, hung_median)
    assert max(hung) < healthy_median + DEAD_COLLECTOR_BOUND_S, (max(hung), healthy_median)
