"""GuardMetrics: every number the guard reports, to OpenTelemetry and to Prometheus.

OpenTelemetry instruments come from the meter provider passed to
``protect()`` / ``guard()``, else from the global one (a no-op until the
application sets one). Prometheus collectors are the process-wide ones of
:mod:`.prometheus`, served on BentoML's ``/metrics``. Both are created at
first use. No label ever carries a principal: only decision, reason, tier,
endpoint, sink.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import metrics

from ..context import QueryContext
from . import attributes as a
from .outcome import Outcome
from .prometheus import PrometheusMetrics, prometheus_metrics


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        self.requests = meter.create_counter(
            a.METRIC_REQUESTS, unit="{request}", description="Guarded queries."
        )
        self.duration = _histogram(
            meter, a.METRIC_DURATION, "s", "Guard latency of a query.", a.DURATION_BUCKETS
        )
        self.risk = _histogram(
            meter, a.METRIC_RISK, "1", "Monitor risk score of the caller.", a.RISK_BUCKETS
        )
        self.blocked = meter.create_up_down_counter(
            a.METRIC_BLOCKED, unit="{principal}", description="Principals blocked by the monitor."
        )
        self.audit_dropped = meter.create_counter(
            a.METRIC_AUDIT_DROPPED, unit="{record}", description="Audit records dropped."
        )
        self.audit_errors = meter.create_counter(
            a.METRIC_AUDIT_ERRORS, unit="{record}", description="Audit records not written."
        )
        self.explain_errors = meter.create_counter(
            a.METRIC_EXPLAIN_ERRORS, unit="{call}", description="Explain hook failures."
        )


def _histogram(
    meter: metrics.Meter, name: str, unit: str, description: str, buckets: tuple[float, ...]
) -> metrics.Histogram:
    try:
        return meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )
    except TypeError:  # opentelemetry-api < 1.23 has no bucket advice
        return meter.create_histogram(name, unit=unit, description=description)


class _Series:
    """The instruments and attribute sets of one (decision, reason, tier, endpoint).

    Built once per label combination (a handful per service), so that a query
    costs dictionary lookups rather than label validation and new dicts.
    """

    def __init__(
        self, key: tuple[str, str, str, str], otel: _Instruments, prom: PrometheusMetrics | None
    ) -> None:
        decision, reason, tier, endpoint = key
        self.request_attributes = {
            a.M_DECISION: decision,
            a.M_REASON: reason,
            a.M_TIER: tier,
            a.M_ENDPOINT: endpoint,
        }
        self.duration_attributes = {a.M_DECISION: decision, a.M_ENDPOINT: endpoint}
        self.risk_attributes = {a.M_TIER: tier, a.M_ENDPOINT: endpoint}
        self.otel_requests = otel.requests
        self.otel_duration = otel.duration
        self.otel_risk = otel.risk
        self.prom: tuple[Any, Any] | None = None
        self._prom_risk_parent: Any = None
        self._prom_risk: Any = None
        self._risk_labels = (tier, endpoint)
        if prom is not None:
            self.prom = (
                prom.requests.labels(decision, reason, tier, endpoint),
                prom.duration.labels(decision, endpoint),
            )
            self._prom_risk_parent = prom.risk

    def observe_risk(self, risk: float) -> None:
        self.otel_risk.record(risk, self.risk_attributes)
        if self._prom_risk_parent is not None:
            if self._prom_risk is None:  # at first use: rejections leave no empty series
                self._prom_risk = self._prom_risk_parent.labels(*self._risk_labels)
            self._prom_risk.observe(risk)


class GuardMetrics:
    """Counts queries, times the guard, and exposes hooks for the monitor and the audit.

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> GuardMetrics(MeterProvider()).add_blocked_principals(1)

    ``risk=False`` (the policy's monitor is off) records no risk scores: every
    one would be 0.
    """

    def __init__(
        self, meter_provider: Any = None, *, prometheus: bool = True, risk: bool = True
    ) -> None:
        self._meter_provider = meter_provider
        self._prometheus = prometheus
        self._risk = risk
        self._otel: _Instruments | None = None
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str, str], _Series] = {}

    def _instruments(self) -> _Instruments:
        otel = self._otel
        if otel is None:
            with self._lock:
                if self._otel is None:
                    meter = metrics.get_meter(a.SCOPE, meter_provider=self._meter_provider)
                    self._otel = _Instruments(meter)
                otel = self._otel
        return otel

    def _prom(self) -> PrometheusMetrics | None:
        return prometheus_metrics() if self._prometheus else None

    def record_query(self, ctx: QueryContext, outcome: Outcome) -> None:
        """Count the query, time it, and record the caller's risk after it."""
        key = (
            outcome.decision,
            outcome.reason or a.NONE,
            ctx.tier_name or a.NONE,
            ctx.endpoint or a.NONE,
        )
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(key, self._instruments(), self._prom())
        series.otel_requests.add(1, series.request_attributes)
        series.otel_duration.record(outcome.duration_s, series.duration_attributes)
        prom = series.prom
        if prom is not None:
            prom[0].inc()
            prom[1].observe(outcome.duration_s)
        if self._risk and (ctx.principal is not None or ctx.risk > 0):
            series.observe_risk(float(ctx.risk))

    def add_blocked_principals(self, delta: int) -> None:
        """The monitor blocked (+1) or released (-1) principals."""
        self._instruments().blocked.add(delta)
        prom = self._prom()
        if prom is not None:
            prom.blocked.inc(delta)

    def set_model_age(self, model: str, days: float, stale: bool) -> None:
        """Export the served model's age, and whether it is past the policy's limit."""
        prom = self._prom()
        if prom is not None:
            prom.model_age.labels(model).set(days)
            prom.model_stale.labels(model).set(1 if stale else 0)

    def audit_dropped(self, sink: str, count: int = 1) -> None:
        self._instruments().audit_dropped.add(count, {a.M_SINK: sink})
        prom = self._prom()
        if prom is not None:
            prom.audit_dropped.labels(sink).inc(count)

    def audit_error(self, sink: str, count: int = 1) -> None:
        self._instruments().audit_errors.add(count, {a.M_SINK: sink})
        prom = self._prom()
        if prom is not None:
            prom.audit_errors.labels(sink).inc(count)

    def explain_error(self) -> None:
        self._instruments().explain_errors.add(1)
        prom = self._prom()
        if prom is not None:
            prom.explain_errors.inc()
