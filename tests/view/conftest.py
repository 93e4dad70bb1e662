"""The digits, a profile fitted on their training rows, and helpers to drive a shared view."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bento_invguard import Policy, Profile
from bento_invguard.context import QueryContext
from bento_invguard.monitor import run_without_io
from bento_invguard.reference import Thresholds
from bento_invguard.view import Judgement, SharedView
from bento_invguard.view.setup import view_thresholds

from ..conftest import digits_module

model_mod: Any = digits_module("model")
X_TRAIN, X_TEST, Y_TRAIN, Y_TEST = model_mod.load_split()
MODEL = model_mod.SoftmaxModel(*model_mod.fit_weights(X_TRAIN, Y_TRAIN))
START = 1_700_000_000.0  # an injected clock starts here (the view keeps whole seconds)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def profile() -> Profile:
    """The profile of the training digits, with its neighbour calibration."""
    return Profile.fit(X_TRAIN)


@pytest.fixture(scope="session")
def thresholds(profile: Profile) -> Thresholds:
    """What the default policy's view uses on the digits (calibrated from the profile)."""
    policy = Policy.model_validate(
        {"tiers": {"public": {}}, "input": {"shape": [64], "min": 0, "max": 16}}
    )
    found = view_thresholds(policy, profile)
    assert found is not None
    return found


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_view(
    thresholds: Thresholds, profile: Profile, clock: Clock, size: int = 4096, ttl: int = 3600
) -> SharedView:
    """A shared view in this process's memory, on the injected clock."""
    return SharedView(thresholds, size=size, ttl=ttl, center=np.asarray(profile.mean), clock=clock)


def predicted(rows: np.ndarray) -> list[int]:
    """The digits model's class per row."""
    return [int(c) for c in MODEL.predict_proba(rows).argmax(axis=1)]


async def ask_async(
    view: SharedView, principal: str, rows: np.ndarray, classes: list[int] | None = None
) -> tuple[Judgement, np.ndarray]:
    """One request as the guard runs it (silent mode): judge, answer, keep."""
    ctx = QueryContext(endpoint="predict", principal=principal, tier_name="public")
    judgement = await view.judge(ctx, rows)
    answers = judgement.answers(predicted(rows) if classes is None else classes, True)
    await view.keep(principal, judgement, answers)
    return judgement, answers


def ask(
    view: SharedView, principal: str, rows: np.ndarray, classes: list[int] | None = None
) -> tuple[Judgement, np.ndarray]:
    """:func:`ask_async` on an in-process view."""
    return run_without_io(ask_async(view, principal, rows, classes))


def chain(n: int, step: float = 0.25, start: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """``n`` queries, each one pixel ``step`` away from the one before: a probe walking
    in small steps from a natural digit (the inversion attacker's stream)."""
    rng = np.random.default_rng(seed)
    x = (X_TEST[0] if start is None else start).astype(np.float64).copy()
    out = []
    for _ in range(n):
        out.append(x.copy())
        pixel = rng.integers(64)
        x[pixel] += step if x[pixel] + step <= 16 else -step
    return np.array(out)
