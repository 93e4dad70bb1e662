"""Finding the scores in what an API returns, and putting truncated ones back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel

from ..context import QueryContext
from ..errors import GuardConfigError
from ..policy import Tier
from .contract import EXPECTED
from .truncation import truncate_for_tier

#: A hook that changes the model's scores before truncation: (ctx, scores, rows
#: answered otherwise) -> scores. The serving-time watermark is one.
Marker = Callable[[QueryContext, np.ndarray, Mapping[int, int] | None], np.ndarray]


class OutputHardener:
    """Applies the caller's tier to an API's output, keeping its type and shape.

    Scores are the output itself (ndarray or nested list), or the field
    ``scores_field`` of a dict or pydantic model, of shape ``(n, classes)``
    with one row per input row. Anything else (class labels, a 1-D array, a
    row count that differs from the input's) is a :class:`GuardConfigError`
    that names ``api``: the scores could not be truncated for the tier.
    """

    def __init__(
        self, scores_field: str | None = None, *, api: str = "?", marker: Marker | None = None
    ) -> None:
        self.scores_field = scores_field
        self.api = api
        self.marker = marker

    def __call__(
        self,
        ctx: QueryContext,
        output: Any,
        tier: Tier,
        *,
        rows: int = 0,
        silenced: dict[int, int] | None = None,
    ) -> Any:
        """``rows``: the input's row count, which the scores must have (0: any, as for
        one item of a stream). ``silenced``: rows answered as a one-hot at the given
        class instead of their own scores (the shared view's silent answers)."""
        ctx.output_mode = tier.output
        if self.scores_field is None:
            return self._harden_scores(ctx, output, tier, rows, silenced)
        field = self.scores_field
        if isinstance(output, BaseModel):
            scores = getattr(output, field, None)
            if scores is None:
                raise self._missing_field(output, field)
            hardened = self._harden_scores(ctx, scores, tier, rows, silenced)
            return output.model_copy(update={field: hardened})
        if isinstance(output, Mapping):
            if field not in output:
                raise self._missing_field(output, field)
            return {**output, field: self._harden_scores(ctx, output[field], tier, rows, silenced)}
        raise GuardConfigError(
            f"API {self.api!r}: scores_field={field!r} is set but the API returned "
            f"{type(output).__name__}, not a dict or pydantic model"
        )

    def _harden_scores(
        self,
        ctx: QueryContext,
        scores: Any,
        tier: Tier,
        rows: int,
        silenced: dict[int, int] | None,
    ) -> Any:
        if isinstance(scores, np.ndarray):
            return _truncate(ctx, self._checked(scores, rows), tier, silenced, self.marker)
        if isinstance(scores, (list, tuple)):
            checked = self._checked(np.asarray(scores), rows)
            return _truncate(ctx, checked, tier, silenced, self.marker).tolist()
        raise GuardConfigError(f"API {self.api!r} returned {type(scores).__name__}; {EXPECTED}")

    def _checked(self, scores: np.ndarray, rows: int) -> np.ndarray:
        shape = tuple(scores.shape)
        if scores.dtype.kind not in "fiu":
            problem = f"an array of {scores.dtype} values"
        elif scores.ndim != 2 or shape[1] == 0:
            labels = " (one value per row: class labels?)" if scores.ndim == 1 else ""
            problem = f"an array of shape {shape}{labels}"
        elif rows and shape[0] != rows:
            problem = f"{shape[0]} rows of scores for {rows} input rows"
        else:
            return scores
        raise GuardConfigError(f"API {self.api!r} returned {problem}; {EXPECTED}")

    def _missing_field(self, output: Any, field: str) -> GuardConfigError:
        return GuardConfigError(
            f"API {self.api!r}: scores_field={field!r} not found in the "
            f"{type(output).__name__} output"
        )


def _truncate(
    ctx: QueryContext,
    scores: np.ndarray,
    tier: Tier,
    silenced: dict[int, int] | None,
    marker: Marker | None = None,
) -> np.ndarray:
    ctx.scores = scores
    if marker is not None:  # the model's scores stay on ctx; the answer shows the mark
        scores = marker(ctx, scores, silenced)
    if silenced:  # the model's scores stay on ctx; the answer shows the cluster's class
        scores = np.array(scores, dtype=np.float64)
        for row, label in silenced.items():
            if 0 <= label < scores.shape[1]:
                scores[row] = 0.0
                scores[row, label] = 1.0
    truncated, ctx.predicted = truncate_for_tier(scores, tier)
    return truncated
