"""The audit trail: one record per guarded query, written off the request path."""

from .configure import audit_writer
from .explain import Explainer
from .record import SCHEMA_VERSION, AuditEntry
from .sinks import AuditSink, BentoMLMonitorSink, JsonlSink, OTelLogSink, audit_path
from .writer import AuditWriter, close_all_writers

__all__ = [
    "SCHEMA_VERSION",
    "AuditEntry",
    "AuditSink",
    "AuditWriter",
    "BentoMLMonitorSink",
    "Explainer",
    "JsonlSink",
    "OTelLogSink",
    "audit_path",
    "audit_writer",
    "close_all_writers",
]
