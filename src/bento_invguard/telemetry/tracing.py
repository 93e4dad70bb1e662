"""One span per guarded query, a child of BentoML's own server span.

The tracer provider is, in order: the one passed to ``protect()`` /
``guard()``; BentoML's own (inside a BentoML service: BentoML never sets it
globally); the global one. It is resolved at the first query, once BentoML
has loaded the serving configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..bentoml_bridge import bentoml_tracer_provider
from ..context import QueryContext
from . import attributes as a
from .model_info import ModelInfo
from .outcome import Outcome


class QueryTracer:
    """Opens the span of a query in :meth:`start`, fills and ends it in :meth:`finish`."""

    def __init__(self, provider: Any = None, *, under_bentoml: bool = False) -> None:
        self._provider = provider
        self._under_bentoml = under_bentoml
        self._tracer: trace.Tracer | None = None
        #: Unsampled traces are skipped only under BentoML's provider (its sampler is
        #: parent-based); a provider passed in may sample what BentoML does not.
        self._follows_bentoml_sampling = provider is None and under_bentoml

    @property
    def tracer(self) -> trace.Tracer:
        tracer = self._tracer
        if tracer is None:
            provider = self._provider
            if provider is None and self._under_bentoml:
                provider = bentoml_tracer_provider()
            tracer = trace.get_tracer(a.SCOPE, tracer_provider=provider)
            self._tracer = tracer
        return tracer

    def start(self, ctx: QueryContext) -> None:
        """Start the query's span under the current context and put it on ``ctx.span``.

        Under BentoML's own tracer provider, a request whose trace is not
        sampled gets no span: BentoML's sampler records every span (for the
        trace id in its logs) but exports only sampled ones, so filling one
        would cost more than the guard's controls and reach no backend. The
        metrics and the audit trail carry the same facts.
        """
        current = otel_context.get_current()
        if self._follows_bentoml_sampling:
            parent = trace.get_current_span(current).get_span_context()
            if parent.is_valid and not parent.trace_flags.sampled:
                ctx.trace_context = parent
                return
        span = self.tracer.start_span(a.SPAN_NAME, context=current, kind=SpanKind.INTERNAL)
        ctx.span = span
        if span.is_recording() and ctx.endpoint is not None:
            span.set_attribute(a.ENDPOINT, ctx.endpoint)

    def finish(self, ctx: QueryContext, outcome: Outcome, model: ModelInfo | None) -> None:
        """Write what was decided onto the span and end it."""
        span = ctx.span
        if span is None:
            return
        try:
            if span.is_recording():
                span.set_attributes(_span_attributes(ctx, outcome, model))
                if outcome.status is not None and outcome.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, outcome.reason))
        finally:
            span.end()


def _span_attributes(
    ctx: QueryContext, outcome: Outcome, model: ModelInfo | None
) -> dict[str, Any]:
    attrs: dict[str, Any] = {a.DECISION: outcome.decision, a.INPUT_ROWS: ctx.rows}
    if ctx.decisions:
        attrs[a.DECISIONS] = [f"{d.control}:{d.outcome}:{d.detail}" for d in ctx.decisions]
    optional: Sequence[tuple[str, Any]] = (
        (a.PRINCIPAL, ctx.principal),
        (a.TIER, ctx.tier_name),
        (a.ENDPOINT, ctx.endpoint),
        (a.ERROR_TYPE, outcome.reason),
        (a.HTTP_STATUS, outcome.status),
        (a.INPUT_SHA256, outcome.input_sha256),
        (a.OUTPUT_MODE, ctx.output_mode),
    )
    attrs.update((key, value) for key, value in optional if value is not None)
    if ctx.predicted:
        attrs[a.PREDICTED] = list(ctx.predicted[: a.PREDICTED_ON_SPAN])
    attrs[a.RISK] = float(ctx.risk)
    if ctx.risk_reasons:
        attrs[a.RISK_REASONS] = [str(r) for r in ctx.risk_reasons]
    if ctx.flagged:
        attrs[a.FLAGGED] = True
    if ctx.degraded:
        attrs[a.DEGRADED] = True
    if model is not None:
        attrs[a.MODEL_TAG] = model.tag
        if model.version:
            attrs[a.MODEL_VERSION] = model.version
        if model.created is not None:
            attrs[a.MODEL_CREATED] = model.created.isoformat()
            age = model.age_days()
            if age is not None:
                attrs[a.MODEL_AGE_DAYS] = round(age, 3)
    return attrs
