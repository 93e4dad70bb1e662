"""APIs the guard cannot apply to, refused with the reason: batchable and task
APIs (one rule for ``@protect`` at startup and ``@guard`` alone at the first
call), and outputs that break the contract when only a call reveals it."""

from __future__ import annotations

import logging
from typing import Any

from ..context import QueryContext
from ..errors import GuardConfigError, GuardRejection, InternalError

logger = logging.getLogger("bento_invguard")


def refuse_unsupported(name: str, method: Any) -> None:
    """Raise :class:`GuardConfigError` if BentoML's API ``method`` is batchable or a task."""
    if method.batchable:
        raise GuardConfigError(
            f"API {name!r} is batchable: BentoML's adaptive batcher merges requests from "
            "different callers into one call, so the guard could not tell whose rows are "
            "whose, nor truncate each caller's scores for its tier. Serve it with "
            "batchable=False (send many rows in one request instead)."
        )
    if method.is_task:
        raise GuardConfigError(
            f"API {name!r} is a @bentoml.task: tasks run after the response is sent, "
            "outside the caller's request, so the guard cannot apply. Use @bentoml.api."
        )


def misconfigured(ctx: QueryContext, api: str, exc: GuardConfigError) -> GuardRejection:
    """A configuration error that only the call could reveal (an output that is not
    ``(n, classes)`` scores): logged as an error naming the API and the output
    control, and the query refused with 500 ``internal_error`` (never served
    unhardened), with the reason in its detail so whoever tries the API learns
    what to change. A query already refused (by a guarded API it called in
    process, whose refusal is the output here) keeps that refusal."""
    if ctx.rejection is not None:
        return ctx.rejection
    logger.error(
        "bento_invguard: API %r cannot be guarded as written (output control): %s", api, exc
    )
    return ctx.reject(InternalError(f"the guard cannot apply: {exc}"), "output")
