"""Recorder: opens a query's span and, when it is answered, writes what was decided.

The middleware (or, without it, the guard wrapper) calls :meth:`Recorder.start`
when a query arrives and :meth:`Recorder.finish` once it is answered. Neither
ever raises into the request.
"""

from __future__ import annotations

import logging
from typing import Any

from ..context import QueryContext
from ..policy import Policy

logger = logging.getLogger("bento_invguard")


class Recorder:
    """Placeholder wiring; spans, metrics and audit sinks are built on these two calls."""

    def __init__(self, policy: Policy, **options: Any) -> None:
        self.policy = policy
        self.options = options

    def start(self, ctx: QueryContext) -> None:
        """Called once per query before any control runs."""

    def finish(self, ctx: QueryContext) -> None:
        """Called once per query after the response status is known (ctx.status)."""
