"""API kinds the guard cannot apply to, refused with the reason: one rule for
``@protect`` (at startup) and ``@guard`` alone (at the first call)."""

from __future__ import annotations

from typing import Any

from ..errors import GuardConfigError


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
