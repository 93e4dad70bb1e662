"""Metrics of guarded queries: OpenTelemetry (InMemoryMetricReader) and Prometheus."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import REGISTRY

from bento_invguard import QueryContext
from bento_invguard.integration.recorder import Recorder
from bento_invguard.telemetry import TelemetryOptions
from bento_invguard.telemetry import attributes as a

from .helpers import ROW, Served, make_otel, telemetry_policy


@pytest.fixture(scope="module")
def served(
    serve: Callable[..., Served], keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Served:
    policy = telemetry_policy(keys, audit={"sink": "none"})
    return serve(policy, keys, tmp_path_factory.mktemp("unused") / "none.jsonl")


def prom(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counts_by(served: Served) -> dict[tuple[str, str, str, str], int]:
    return {
        (
            p.attributes[a.M_DECISION],
            p.attributes[a.M_REASON],
            p.attributes[a.M_TIER],
            p.attributes[a.M_ENDPOINT],
        ): p.value
        for p in served.otel.points(a.METRIC_REQUESTS)
    }


def test_requests_are_counted_by_decision_reason_tier(served: Served) -> None:
    """invguard.requests (OTel) and invguard_requests_total (Prometheus) move together."""
    labels = {"decision": "reject", "reason": "forbidden", "tier": "public", "endpoint": "admin"}
    before = prom("invguard_requests_total", **labels)
    served.post("/predict", [ROW], tier="public")
    served.post("/predict", [ROW], tier="public")
    served.post("/admin", [ROW], tier="public")
    served.post("/predict", [ROW])
    counts = counts_by(served)
    assert 2 == counts[("allow", "none", "public", "predict")]
    assert 1 == counts[("reject", "forbidden", "public", "admin")]
    assert 1 == counts[("reject", "unauthenticated", "none", "predict")]
    assert before + 1 == prom("invguard_requests_total", **labels)


def test_counter_name_has_no_total_suffix(served: Served) -> None:
    """OpenTelemetry counter names carry no _total (the Prometheus exposition adds it)."""
    served.post("/predict", [ROW], tier="trusted")
    names = {
        m.name
        for rm in served.otel.reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {a.METRIC_REQUESTS, a.METRIC_DURATION, a.METRIC_RISK} <= names
    assert not any(name.endswith("_total") for name in names)


def test_guard_latency_histogram_in_seconds(served: Served) -> None:
    """Every query lands in invguard.guard.duration, in seconds (well under one here)."""
    before = prom("invguard_guard_duration_seconds_count", decision="allow", endpoint="predict")
    served.post("/predict", [ROW], tier="trusted")
    points = [
        p
        for p in served.otel.points(a.METRIC_DURATION)
        if p.attributes[a.M_DECISION] == "allow" and p.attributes[a.M_ENDPOINT] == "predict"
    ]
    assert 1 == len(points)
    assert points[0].count >= 1
    assert 0.0 < points[0].max < 1.0
    after = prom("invguard_guard_duration_seconds_count", decision="allow", endpoint="predict")
    assert before + 1 == after


def test_risk_score_histogram_records_authenticated_queries(served: Served) -> None:
    """The caller's risk after each authenticated query goes to invguard.risk."""
    served.post("/predict", [ROW], tier="trusted")
    points = [p for p in served.otel.points(a.METRIC_RISK) if p.attributes[a.M_TIER] == "trusted"]
    assert points and points[0].count >= 1
    assert 0.0 <= points[0].min <= points[0].max <= 1.0


def test_blocked_principals_gauge_follows_the_monitor(served: Served) -> None:
    """add_blocked_principals(+n/-n) moves the up-down counter and the Prometheus gauge."""
    before = prom("invguard_blocked_principals")
    served.recorder.add_blocked_principals(2)
    served.recorder.add_blocked_principals(-1)
    (point,) = served.otel.points(a.METRIC_BLOCKED)
    assert 1 == point.value
    assert before + 1 == prom("invguard_blocked_principals")


def test_unsampled_queries_are_counted_without_span_work() -> None:
    """With a sampler that drops everything, no span is exported, metrics still count."""
    otel = make_otel()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    policy = telemetry_policy({}, audit={"sink": "none"})
    recorder = Recorder(
        policy,
        TelemetryOptions(tracer_provider=tracer_provider, meter_provider=otel.meter_provider),
    )
    ctx = QueryContext(endpoint="predict", principal="p", tier_name="public")
    recorder.start(ctx)
    assert not ctx.span.is_recording()
    ctx.status = 200
    recorder.finish(ctx)
    assert () == exporter.get_finished_spans()
    (point,) = otel.points(a.METRIC_REQUESTS)
    assert 1 == point.value


def test_a_block_by_the_monitor_moves_the_blocked_principals_gauge() -> None:
    """The guard's monitor feeds the gauge: +1 when it blocks a key, back when cleared."""
    from bento_invguard import Policy
    from bento_invguard.integration.pipeline import GuardPipeline
    from bento_invguard.monitor import run_without_io

    policy = Policy.model_validate({"tiers": {"public": {"output": "label"}}})
    pipeline = GuardPipeline(policy)
    before = prom("invguard_blocked_principals")
    ctx = QueryContext("predict", principal="mallory")
    run_without_io(pipeline.monitor.observe_refused(ctx, 100, probing=True))
    assert before + 1 == prom("invguard_blocked_principals")
    run_without_io(pipeline.monitor.unblock(pipeline.monitor.key(ctx)))
    assert before == prom("invguard_blocked_principals")
