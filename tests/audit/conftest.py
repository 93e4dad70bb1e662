"""Fixtures of the audit tests (see tests/telemetry/helpers.py)."""

from ..telemetry.helpers import keys, serve

__all__ = ["keys", "serve"]
