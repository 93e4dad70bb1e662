"""Explainer: runs the user's ``explain(x_row, scores_row)`` hook, bounded and safe.

The hook is called on the audit writer thread (never on the request path)
for the first rows of a flagged query. A result must be a mapping; it is
kept when its JSON form fits the policy's size bound and replaced by a
short note otherwise. A hook that raises is counted and logged (rate
limited), never propagated.

>>> explainer = Explainer(lambda x, s: {"top": int(s.argmax())}, rows=2, max_bytes=256)
>>> import numpy as np
>>> explainer(np.zeros((3, 4)), np.eye(3))
[{'top': 0}, {'top': 1}]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ..telemetry.options import ExplainHook
from .reporting import RateLimitedLog

logger = logging.getLogger("bento_invguard")


class Explainer:
    """Calls ``hook`` per row and keeps small, JSON-serialisable answers."""

    def __init__(
        self,
        hook: ExplainHook,
        *,
        rows: int,
        max_bytes: int,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.hook = hook
        self.rows = rows
        self.max_bytes = max_bytes
        self.on_error = on_error
        self._log = RateLimitedLog(logger, "bento_invguard: the explain hook failed")

    def __call__(self, inputs: Any, scores: Any) -> list[Any] | None:
        """One explanation (or ``None`` where the hook failed) for each of the first rows."""
        if inputs is None or scores is None or self.rows == 0:
            return None
        count = min(len(inputs), len(scores), self.rows)
        return [self._one(inputs[i], scores[i]) for i in range(count)]

    def _one(self, x_row: Any, scores_row: Any) -> Any:
        try:
            result = self.hook(x_row, scores_row)
            if not isinstance(result, Mapping):
                raise TypeError(f"explain returned {type(result).__name__}, not a mapping")
            text = json.dumps(dict(result), default=str, allow_nan=False)
        except Exception as exc:
            if self.on_error is not None:
                self.on_error()
            self._log.warning(exc)
            return None
        size = len(text.encode("utf-8"))
        if size > self.max_bytes:
            return {"truncated": True, "bytes": size, "max_bytes": self.max_bytes}
        return json.loads(text)
