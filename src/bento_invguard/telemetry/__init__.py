"""Transparency: spans, metrics and the audit trail of every guarded query."""

from . import attributes
from .metrics import GuardMetrics
from .model_info import ModelInfo
from .options import ExplainHook, TelemetryOptions
from .recorder import Recorder

__all__ = [
    "ExplainHook",
    "GuardMetrics",
    "ModelInfo",
    "Recorder",
    "TelemetryOptions",
    "attributes",
]
