"""Recorder: opens a query's span and, when it is answered, writes what was decided.

The middleware (or, without it, the guard wrapper) calls :meth:`Recorder.start`
when a query arrives and :meth:`Recorder.finish` once it is answered. Neither
ever raises into the request: a telemetry failure is logged and the query
goes on.
"""

from __future__ import annotations

import logging

from ..audit import AuditEntry, AuditWriter, audit_writer
from ..context import QueryContext
from ..policy import Policy
from ..telemetry.metrics import GuardMetrics
from ..telemetry.model_info import ModelInfo, describe_models
from ..telemetry.options import TelemetryOptions
from ..telemetry.outcome import Outcome
from ..telemetry.tracing import QueryTracer

logger = logging.getLogger("bento_invguard")


class Recorder:
    """Spans, metrics and the audit trail of every guarded query.

    >>> from bento_invguard import Policy, QueryContext
    >>> from bento_invguard.policy.observability import AuditPolicy
    >>> recorder = Recorder(Policy(tiers={"public": {}}, audit=AuditPolicy(sink="none")))
    >>> ctx = QueryContext(endpoint="predict")
    >>> recorder.start(ctx); ctx.status = 200; recorder.finish(ctx)
    """

    def __init__(
        self,
        policy: Policy,
        options: TelemetryOptions | None = None,
    ) -> None:
        self.policy = policy
        self.options = options = options or TelemetryOptions()
        self.tracer = QueryTracer(options.tracer_provider, under_bentoml=options.under_bentoml)
        self.metrics = GuardMetrics(options.meter_provider, risk=policy.monitor.enabled)
        self.audit: AuditWriter | None = audit_writer(
            policy,
            self.metrics,
            logger_provider=options.logger_provider,
            explain=options.explain,
        )
        self._capture_full = policy.audit.capture == "full"
        self._model: ModelInfo | None = None
        self._model_resolved = not options.models

    @property
    def model(self) -> ModelInfo | None:
        """The served model, read from the model store at the first query."""
        if not self._model_resolved:
            self._model = describe_models(self.options.models)
            self._model_resolved = True
        return self._model

    def start(self, ctx: QueryContext) -> None:
        """Called once per query before any control runs."""
        try:
            self.tracer.start(ctx)
        except Exception:
            logger.warning("bento_invguard: could not start the query span", exc_info=True)

    def finish(self, ctx: QueryContext) -> None:
        """Called once per query after the response status is known (ctx.status)."""
        try:
            self._finish(ctx)
        except Exception:
            logger.warning("bento_invguard: could not record the query", exc_info=True)

    def _finish(self, ctx: QueryContext) -> None:
        span = ctx.span
        recording = span is not None and span.is_recording()
        outcome = Outcome.of(ctx, with_digest=recording)
        model = self.model
        self.tracer.finish(ctx, outcome, model)
        self.metrics.record_query(ctx, outcome)
        if self.audit is not None:
            entry = AuditEntry.of(ctx, outcome, model)
            explained = ctx.flagged and self.options.explain is not None
            if not (self._capture_full or explained):
                entry.scores = None  # not needed: don't hold it until the writer runs
            self.audit.submit(entry)

    def check_model_age(self) -> float | None:
        """At startup: export the model's age; warn when it is past ``max_model_age_days``."""
        try:
            model = self.model
            days = model.age_days() if model is not None else None
            if model is None or days is None:
                return None
            limit = self.policy.max_model_age_days
            stale = limit is not None and days > limit
            self.metrics.set_model_age(model.tag, days, stale)
            if stale:
                logger.warning(
                    "bento_invguard: model %s is %.0f days old, older than max_model_age_days "
                    "(%s): retrain it, and review the flagged queries in the audit trail first",
                    model.tag,
                    days,
                    limit,
                )
            return days
        except Exception:
            logger.warning("bento_invguard: could not check the model's age", exc_info=True)
            return None

    def add_blocked_principals(self, delta: int) -> None:
        """For the monitor: ``+1`` when it blocks a principal, ``-1`` when a block ends."""
        self.metrics.add_blocked_principals(delta)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued audit records are written; False on timeout."""
        return self.audit.flush(timeout) if self.audit is not None else True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued and close the audit sink (also done at exit)."""
        if self.audit is not None:
            self.audit.close(timeout)
