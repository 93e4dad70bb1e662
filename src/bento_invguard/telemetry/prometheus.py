"""The guard's Prometheus metrics, served on the service's own ``/metrics``.

BentoML serves ``/metrics`` from ``prometheus_client``'s registry, in
multiprocess mode under ``bentoml serve``. The collectors are created once
per process and only at first use (BentoML issue 5056): created at import,
they would be bound before BentoML has set ``PROMETHEUS_MULTIPROC_DIR`` for
the worker and never reach ``/metrics``. (``bentoml.metrics`` is a
deprecated alias of ``prometheus_client`` in BentoML 1.4, so the client is
used directly.)
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from . import attributes as a

logger = logging.getLogger("bento_invguard")
_lock = threading.Lock()
_collectors: PrometheusMetrics | None = None
_failed = False


class PrometheusMetrics:
    """The process's collectors; use :func:`prometheus_metrics` to get them."""

    def __init__(self) -> None:
        import prometheus_client as prom

        labels = a.PROM_REQUEST_LABELS
        self.requests: Any = prom.Counter(
            a.PROM_REQUESTS,
            "Guarded queries by decision, rejection reason, tier, endpoint.",
            labels,
        )
        self.duration: Any = prom.Histogram(
            a.PROM_DURATION,
            "Time from the guard taking a query to its answer, in seconds.",
            ("decision", "endpoint"),
            buckets=a.DURATION_BUCKETS,
        )
        self.risk: Any = prom.Histogram(
            a.PROM_RISK,
            "Monitor risk score (0..1) of the caller after each authenticated query.",
            ("tier", "endpoint"),
            buckets=a.RISK_BUCKETS,
        )
        self.blocked: Any = prom.Gauge(
            a.PROM_BLOCKED,
            "Principals currently blocked by the monitor.",
            multiprocess_mode="livesum",
        )
        self.model_age: Any = prom.Gauge(
            "invguard_model_age_days",
            "Age of the served model in days (from its creation time in the model store).",
            ("model",),
            multiprocess_mode="max",
        )
        self.model_stale: Any = prom.Gauge(
            "invguard_model_stale",
            "1 when the served model is older than the policy's max_model_age_days.",
            ("model",),
            multiprocess_mode="max",
        )
        self.audit_dropped: Any = prom.Counter(
            a.PROM_AUDIT_DROPPED, "Audit records dropped because the queue was full.", ("sink",)
        )
        self.audit_errors: Any = prom.Counter(
            a.PROM_AUDIT_ERRORS, "Audit records a sink failed to write.", ("sink",)
        )
        self.explain_errors: Any = prom.Counter(
            a.PROM_EXPLAIN_ERRORS, "Explain hook calls that raised or returned no mapping.", ()
        )


def prometheus_metrics() -> PrometheusMetrics | None:
    """The process-wide collectors, created at the first call; ``None`` if unavailable."""
    global _collectors, _failed
    collectors = _collectors
    if collectors is not None or _failed:
        return collectors
    with _lock:
        if _collectors is None and not _failed:
            try:
                _collectors = PrometheusMetrics()
            except Exception:  # no prometheus_client, or a name taken by someone else
                _failed = True
                logger.warning("bento_invguard: Prometheus metrics are unavailable", exc_info=True)
        return _collectors
