"""Transparency: the spans and metrics of every guarded query (integration.recorder
writes them, with the audit trail, when a query is answered)."""

from . import attributes
from .metrics import GuardMetrics
from .model_info import ModelInfo
from .options import ExplainHook, TelemetryOptions

__all__ = [
    "ExplainHook",
    "GuardMetrics",
    "ModelInfo",
    "TelemetryOptions",
    "attributes",
]
