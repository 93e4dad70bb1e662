"""No guard span for a trace BentoML will not export (sample_rate 0 records, never exports)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from bento_invguard import QueryContext
from bento_invguard.audit import AuditEntry
from bento_invguard.telemetry.outcome import Outcome
from bento_invguard.telemetry.tracing import QueryTracer


@pytest.fixture(params=[False, True], ids=["unsampled", "sampled"])
def parent_sampled(request: pytest.FixtureRequest) -> Iterator[bool]:
    flags = TraceFlags(TraceFlags.SAMPLED if request.param else TraceFlags.DEFAULT)
    parent = NonRecordingSpan(SpanContext(0x1234, 0x99, is_remote=False, trace_flags=flags))
    token = otel_context.attach(set_span_in_context(parent))
    try:
        yield bool(request.param)
    finally:
        otel_context.detach(token)


def test_under_bentoml_an_unsampled_trace_gets_no_guard_span(parent_sampled: bool) -> None:
    """BentoML's provider: a span only when the request's trace is sampled."""
    tracer = QueryTracer(None, under_bentoml=True)
    ctx = QueryContext(endpoint="predict")
    tracer.start(ctx)
    assert parent_sampled == (ctx.span is not None)
    ctx.decide("access", "reject", "unauthenticated")  # no span: nothing to add to, no error
    ctx.status = 401
    entry = AuditEntry.of(ctx, Outcome.of(ctx, with_digest=False), None)
    assert f"{0x1234:032x}" == entry.trace_id  # the request's trace, with or without a span
    if not parent_sampled:
        assert f"{0x99:016x}" == entry.span_id


def test_a_provider_passed_in_decides_for_itself(parent_sampled: bool) -> None:
    """With the user's own provider the guard always asks it; its sampler decides."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = QueryTracer(provider, under_bentoml=True)
    ctx = QueryContext(endpoint="predict")
    tracer.start(ctx)
    assert ctx.span is not None
    ctx.span.end()
    assert (1 if parent_sampled else 0) == len(exporter.get_finished_spans())
