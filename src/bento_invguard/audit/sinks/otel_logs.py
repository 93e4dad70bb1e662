"""OTelLogSink: audit records as OpenTelemetry log records.

Each record becomes one log record: the JSON record as the body, a few flat
attributes to filter on (principal, tier, endpoint, decision, error.type,
status), the event name ``invguard.audit`` and the query's trace and span
ids, so a backend links it to the query's span.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber, get_logger
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from ...telemetry import attributes as a

EVENT_NAME = "invguard.audit"

_ATTRIBUTES = (
    (a.PRINCIPAL, "principal"),
    (a.TIER, "tier"),
    (a.ENDPOINT, "endpoint"),
    (a.DECISION, "decision"),
    (a.ERROR_TYPE, "reason"),
    (a.HTTP_STATUS, "status"),
)


class OTelLogSink:
    """Emits records through ``logger_provider`` (else the global one)."""

    name = "otel_logs"

    def __init__(self, logger_provider: Any = None) -> None:
        self.logger_provider = logger_provider
        self._logger: Any = None

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        if self._logger is None:
            self._logger = get_logger(a.SCOPE, logger_provider=self.logger_provider)
        for record in records:
            attributes = {key: record[field] for key, field in _ATTRIBUTES if record.get(field)}
            digest = (record.get("input") or {}).get("sha256")
            if digest:
                attributes[a.INPUT_SHA256] = digest
            self._logger.emit(
                context=_span_context(record),
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body=json.dumps(record, separators=(",", ":"), default=str),
                attributes=attributes,
                event_name=EVENT_NAME,
            )

    def flush(self) -> None:
        force_flush = getattr(self.logger_provider, "force_flush", None)
        if callable(force_flush):
            force_flush()

    def close(self) -> None:
        self.flush()


def _span_context(record: dict[str, Any]) -> Any:
    trace_id, span_id = record.get("trace_id"), record.get("span_id")
    if not trace_id or not span_id:
        return None
    span = NonRecordingSpan(
        SpanContext(int(trace_id, 16), int(span_id, 16), False, TraceFlags(TraceFlags.DEFAULT))
    )
    return trace.set_span_in_context(span)
