"""Names of every span attribute, metric and metric attribute the guard emits.

All guard-specific names live under ``invguard.``: lowercase, dot-separated,
snake_case inside a part. Two OpenTelemetry semantic-convention names are
reused rather than reinvented: ``error.type`` (the rejection reason) and
``http.response.status_code``.

>>> from bento_invguard.telemetry import attributes as a
>>> a.PRINCIPAL
'invguard.principal'
"""

from __future__ import annotations

from typing import Final

#: Name of the one span each guarded query gets (a child of BentoML's server span).
SPAN_NAME: Final = "invguard.query"
#: Instrumentation scope of spans and metrics.
SCOPE: Final = "bento_invguard"

# ---------------------------------------------------------------- span attributes
PRINCIPAL: Final = "invguard.principal"
TIER: Final = "invguard.tier"
ENDPOINT: Final = "invguard.endpoint"
DECISION: Final = "invguard.decision"
#: Every control decision in order, as ``control:outcome:detail`` strings.
DECISIONS: Final = "invguard.decisions"
ERROR_TYPE: Final = "error.type"
HTTP_STATUS: Final = "http.response.status_code"
INPUT_SHA256: Final = "invguard.input.sha256"
INPUT_ROWS: Final = "invguard.input.rows"
OUTPUT_MODE: Final = "invguard.output.mode"
PREDICTED: Final = "invguard.predicted"
RISK: Final = "invguard.risk"
RISK_REASONS: Final = "invguard.risk.reasons"
FLAGGED: Final = "invguard.flagged"
DEGRADED: Final = "invguard.degraded"
MODEL_TAG: Final = "invguard.model.tag"
MODEL_VERSION: Final = "invguard.model.version"
MODEL_CREATED: Final = "invguard.model.created"
MODEL_AGE_DAYS: Final = "invguard.model.age_days"

#: Decision values.
ALLOW: Final = "allow"
REJECT: Final = "reject"
#: Metric label value when there is no rejection reason or no tier.
NONE: Final = "none"

#: How many predicted classes a span carries (the audit record keeps them all).
PREDICTED_ON_SPAN: Final = 8

# ---------------------------------------------------------------- OpenTelemetry metrics
METRIC_REQUESTS: Final = "invguard.requests"
METRIC_DURATION: Final = "invguard.guard.duration"
METRIC_RISK: Final = "invguard.risk"
METRIC_BLOCKED: Final = "invguard.blocked_principals"
METRIC_AUDIT_DROPPED: Final = "invguard.audit.dropped"
METRIC_AUDIT_ERRORS: Final = "invguard.audit.errors"
METRIC_EXPLAIN_ERRORS: Final = "invguard.explain.errors"

# Attributes of the metrics (low cardinality only: never the principal).
M_DECISION: Final = DECISION
M_REASON: Final = ERROR_TYPE
M_TIER: Final = TIER
M_ENDPOINT: Final = ENDPOINT
M_SINK: Final = "invguard.audit.sink"

# ---------------------------------------------------------------- Prometheus (/metrics)
PROM_REQUESTS: Final = "invguard_requests"  # exposed as invguard_requests_total
PROM_DURATION: Final = "invguard_guard_duration_seconds"
PROM_RISK: Final = "invguard_risk_score"
PROM_BLOCKED: Final = "invguard_blocked_principals"
PROM_AUDIT_DROPPED: Final = "invguard_audit_dropped"  # _total
PROM_AUDIT_ERRORS: Final = "invguard_audit_errors"  # _total
PROM_EXPLAIN_ERRORS: Final = "invguard_explain_errors"  # _total
#: Prometheus label names, in order, for the request metrics.
PROM_REQUEST_LABELS: Final = ("decision", "reason", "tier", "endpoint")

#: Histogram buckets: guard latency in seconds, and risk on its 0..1 scale.
DURATION_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
RISK_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
