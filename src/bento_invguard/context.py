"""The one object that travels a query's path through the controls."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import GuardRejection
    from .policy import Tier
    from .ratelimit import LimitStatus


#: Decisions that let a query go on unchanged: listed on the span, not events.
ROUTINE_OUTCOMES = frozenset({"authenticated", "anonymous", "spent", "pass"})


@dataclass(slots=True)
class Decision:
    """What one control decided about the query."""

    control: str
    outcome: str
    detail: str = ""


@dataclass(slots=True)
class QueryContext:
    """State of one guarded query; each control reads it and adds its decision."""

    endpoint: str | None
    path: str = ""
    principal: str | None = None
    tier_name: str | None = None
    tier: Tier | None = None
    via_http: bool = True
    client: str | None = None
    rows: int = 0
    #: The rate-limit windows' state after this query's rows were spent (its
    #: RateLimit-* headers); None when no limit applies.
    rate: LimitStatus | None = None
    output_mode: str | None = None
    decisions: list[Decision] = field(default_factory=list)
    rejection: GuardRejection | None = None
    started: float = field(default_factory=time.perf_counter)
    #: The validated model input (a reference, never logged unless the policy opts in).
    input: Any = None
    #: The model's own scores (n, classes) and predicted class per row.
    scores: Any = None
    predicted: list[int] | None = None
    #: Monitor verdict for the principal after this query.
    risk: float = 0.0
    risk_reasons: list[str] = field(default_factory=list)
    flagged: bool = False
    degraded: bool = False
    #: The span of this query while it is recorded; HTTP status once answered.
    span: Any = None
    #: The span context of the request when the query has no span of its own (an
    #: unsampled trace): the audit record still carries its trace id.
    trace_context: Any = None
    status: int | None = None
    #: True when the guard wrapper (not the middleware) opened this query.
    opened_by_guard: bool = False
    #: True once BentoML has called the guarded API function for this query.
    api_called: bool = False

    def decide(self, control: str, outcome: str, detail: str = "") -> None:
        """Record a decision; one that changes the answer is also a span event.

        Routine decisions (a key accepted, rows spent, input passed) are only
        listed on the span at the end (``invguard.decisions``): an event each
        would cost more than the controls themselves.
        """
        self.decisions.append(Decision(control, outcome, detail))
        if outcome not in ROUTINE_OUTCOMES:
            span = self.span
            if span is not None and span.is_recording():
                span.add_event(
                    f"invguard.{control}",
                    {"invguard.outcome": outcome, "invguard.detail": detail},
                )

    def reject(self, rejection: GuardRejection, control: str) -> GuardRejection:
        """Record ``rejection`` as the query's outcome and hand it back for raising."""
        self.rejection = rejection
        self.decide(control, "reject", rejection.reason)
        return rejection


class _Slot:
    """Holds the current query for as long as it is being served.

    The context variable holds this slot, not the query: every copy of the
    context taken while a query is served (by a timer, a task, a thread) keeps
    only the slot, which is emptied when the query ends. Without it, a copy
    that outlives the request (uvicorn's keep-alive timer keeps one for
    seconds after it is cancelled) would keep the query, with its input and
    scores, alive in memory, and in the collector's way, long after it was
    answered.
    """

    __slots__ = ("ctx",)

    def __init__(self, ctx: QueryContext | None) -> None:
        self.ctx = ctx


_current: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar(
    "invguard_query", default=None
)


def current_query() -> QueryContext | None:
    """The query being served on this task or thread, if any."""
    slot = _current.get()
    return slot.ctx if slot is not None else None


class active_query:
    """Make ``ctx`` the current query for the ``with`` block.

    A class rather than a generator-based context manager: entered on every
    guarded request, it costs two method calls instead of a generator. On
    exit the query is also taken out of every copy of the context made in the
    block (see :class:`_Slot`).
    """

    __slots__ = ("_slot", "_token", "ctx")

    def __init__(self, ctx: QueryContext) -> None:
        self.ctx = ctx

    def __enter__(self) -> QueryContext:
        self._slot = slot = _Slot(self.ctx)
        self._token = _current.set(slot)
        return self.ctx

    def __exit__(self, *exc: object) -> None:
        self._slot.ctx = None
        _current.reset(self._token)
