"""The facts about an answered query that spans, metrics and the audit trail share."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..context import QueryContext
from . import attributes as a
from .inputs import input_sha256


@dataclass(frozen=True, slots=True)
class Outcome:
    """Decision, rejection reason, HTTP status, guard latency and input digest of a query.

    ``reason`` is the rejection's stable reason (``error.type``); for a 5xx
    no control decided, it is the status code, as OpenTelemetry's
    conventions suggest.
    """

    decision: str
    reason: str | None
    status: int | None
    duration_s: float
    input_sha256: str | None = None

    @classmethod
    def of(cls, ctx: QueryContext, *, with_digest: bool) -> Outcome:
        rejection = ctx.rejection
        status = ctx.status
        reason: str | None
        if rejection is not None:
            decision, reason = a.REJECT, rejection.reason
            if status is None:
                status = rejection.status
        else:
            decision = a.ALLOW
            reason = str(status) if status is not None and status >= 500 else None
        digest = input_sha256(ctx.input) if with_digest else None
        return cls(decision, reason, status, time.perf_counter() - ctx.started, digest)
