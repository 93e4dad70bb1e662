"""Transparency: spans, metrics and the audit trail of every guarded query."""

from .recorder import Recorder

__all__ = ["Recorder"]
