"""Finding the scores in what an API returns, and putting truncated ones back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel

from ..context import QueryContext
from ..errors import GuardConfigError
from ..policy import Tier
from .truncation import truncate_for_tier


class OutputHardener:
    """Applies the caller's tier to an API's output, keeping its type and shape.

    Scores are the output itself (ndarray or nested list), or the field
    ``scores_field`` of a dict or pydantic model.
    """

    def __init__(self, scores_field: str | None = None) -> None:
        self.scores_field = scores_field

    def __call__(
        self, ctx: QueryContext, output: Any, tier: Tier, silenced: dict[int, int] | None = None
    ) -> Any:
        """``silenced``: rows answered as a one-hot at the given class instead of their own
        scores (the shared view's silent answers)."""
        ctx.output_mode = tier.output
        if self.scores_field is None:
            return _harden_scores(ctx, output, tier, silenced)
        field = self.scores_field
        if isinstance(output, BaseModel):
            scores = getattr(output, field, None)
            if scores is None:
                raise _missing_field(output, field)
            return output.model_copy(update={field: _harden_scores(ctx, scores, tier, silenced)})
        if isinstance(output, Mapping):
            if field not in output:
                raise _missing_field(output, field)
            return {**output, field: _harden_scores(ctx, output[field], tier, silenced)}
        raise GuardConfigError(
            f"scores_field={field!r} is set but the API returned {type(output).__name__}, "
            "not a dict or pydantic model"
        )


def _harden_scores(
    ctx: QueryContext, scores: Any, tier: Tier, silenced: dict[int, int] | None
) -> Any:
    if isinstance(scores, np.ndarray):
        return _truncate(ctx, _numeric(scores), tier, silenced)
    if isinstance(scores, (list, tuple)):
        return _truncate(ctx, _numeric(np.asarray(scores)), tier, silenced).tolist()
    raise GuardConfigError(
        f"cannot truncate an output of type {type(scores).__name__}: return an ndarray "
        "of scores (n, classes), or set scores_field to the field that holds them"
    )


def _truncate(
    ctx: QueryContext, scores: np.ndarray, tier: Tier, silenced: dict[int, int] | None
) -> np.ndarray:
    ctx.scores = scores[np.newaxis, :] if scores.ndim == 1 else scores
    if silenced:
        shown = np.array(ctx.scores, dtype=np.float64)
        for row, label in silenced.items():
            if 0 <= label < shown.shape[1]:
                shown[row] = 0.0
                shown[row, label] = 1.0
        scores = shown if scores.ndim == 2 else shown[0]
    truncated, ctx.predicted = truncate_for_tier(scores, tier)
    return truncated


def _numeric(scores: np.ndarray) -> np.ndarray:
    if scores.dtype.kind not in "fiu" or scores.ndim not in (1, 2):
        raise GuardConfigError(
            f"the model returned an array of dtype {scores.dtype} and shape {scores.shape}; "
            "the guard needs numeric scores of shape (n, classes)"
        )
    return scores


def _missing_field(output: Any, field: str) -> GuardConfigError:
    return GuardConfigError(
        f"scores_field={field!r} not found in the {type(output).__name__} output"
    )
