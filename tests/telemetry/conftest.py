"""Fixtures of the telemetry tests (see helpers.py)."""

from .helpers import keys, serve

__all__ = ["keys", "serve"]
