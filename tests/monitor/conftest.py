"""The digits model and profile, a monitor policy, and one query through the monitor."""

from __future__ import annotations

from typing import Any

import numpy as np

from bento_invguard import Policy, Profile
from bento_invguard.context import QueryContext
from bento_invguard.monitor import Monitor, run_without_io

from ..conftest import digits_module

model_mod: Any = digits_module("model")
X_TRAIN, X_TEST, Y_TRAIN, _ = model_mod.load_split()
MODEL = model_mod.SoftmaxModel(*model_mod.fit_weights(X_TRAIN, Y_TRAIN))
PROFILE = Profile.fit(X_TRAIN)
#: A confident answer: far from the decision boundary, so only the probing flag counts.
CONFIDENT = np.array([[0.96, 0.02, 0.02]])
START = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy(**monitor: Any) -> Policy:
    return Policy.model_validate(
        {"tiers": {"public": {}}, "input": {"shape": [64], "min": 0, "max": 16}, "monitor": monitor}
    )


def context(principal: str) -> QueryContext:
    return QueryContext(endpoint="predict", principal=principal, tier_name="public")


def ask(
    mon: Monitor,
    principal: str,
    rows: np.ndarray | None = None,
    probing: bool = False,
    repeat: bool = False,
) -> QueryContext:
    """One query through the monitor, as the guard runs it: block check, the model, then
    assess with the shared view's verdict (``probing``, ``repeat``) for every row. Without
    ``rows``, one row with a confident answer."""
    ctx = context(principal)
    run_without_io(mon.check_block(ctx))
    ctx.scores = CONFIDENT if rows is None else MODEL.predict_proba(rows)
    n = len(ctx.scores)
    run_without_io(mon.assess(ctx, np.full(n, probing), np.full(n, repeat)))
    return ctx
