"""Extraction: label queries with the endpoint and train a copy of the model on its answers.

Where the queries come from is the *strategy*
(:mod:`~bento_invguard.redteam.strategies`): natural public rows, uniform
draws, blends of public rows, Jacobian-based augmentation, or out-of-domain
photographs. The copy is a softmax regression (NumPy,
:class:`~bento_invguard.redteam.scoring.SoftmaxRegression`) trained on the
endpoint's top-1 answers, plus the attacker's own labelled rows when it has
some: labels survive every output mode and every defence that keeps the
argmax, and an attacker uses all it has. What the answers are worth is the
copy's gain over a copy of those labelled rows alone (see ``runner``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .common import AttackResult, InputSpace, ask_or_skip
from .exchange import Stopped
from .scoring import SoftmaxRegression
from .strategies import (
    Strategy,
    blend_rows,
    jacobian_step,
    knockoff_rows,
    natural_rows,
    uniform_rows,
)


class Labeller(Protocol):
    """What extraction needs of an endpoint: answers within a row budget.

    :class:`~bento_invguard.redteam.client.Oracle` is one; ``ask`` raises
    :class:`~bento_invguard.redteam.client.Stopped` when no more answers will come.
    """

    @property
    def remaining(self) -> int: ...

    def ask(self, rows: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ExtractionSettings:
    """``batch`` rows per request; ``parts`` public rows per blend at most.

    ``jacobian``: ``seeds`` public rows to start from, each round moves every
    row labelled so far by ``step`` (a share of the input range) along the
    sign of the copy's gradient. ``knockoff``: photographs scaled to
    ``[low, high]`` (default: the box of the input space).
    """

    strategy: Strategy = "natural"
    batch: int = 20
    parts: int = 3
    seed: int = 0
    seeds: int = 100
    step: float = 0.1
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Labelled:
    """Rows with labels: the attacker's own data, or the endpoint's answers."""

    x: np.ndarray
    y: np.ndarray


def extract(
    oracle: Labeller,
    space: InputSpace,
    pool: np.ndarray | None,
    settings: ExtractionSettings | None = None,
    own: Labelled | None = None,
) -> AttackResult:
    """Spend the budget on labelled queries, then fit a copy on the answers (and ``own`` rows)."""
    cfg = settings or ExtractionSettings()
    result = AttackResult("extraction")
    result.details["strategy"] = cfg.strategy
    rng = np.random.default_rng(cfg.seed)
    got = _Answers()
    try:
        if cfg.strategy == "jacobian":
            _jacobian(oracle, space, pool, cfg, rng, got, result, own)
        else:
            _send(oracle, _plan(cfg, space, pool, oracle.remaining, rng), cfg.batch, got, result)
        result.stopped = "budget"
    except Stopped as stop:
        result.stopped = stop.reason
    result.details["trained_on"] = len(got)
    if not len(got):
        result.note("no answer to train a copy on: the copy is the attacker's own data alone")
        if own is not None and len(own.x):
            result.copy = fit_copy(None, own, 2)
        return result
    answered = got.labelled()
    if len(np.unique(answered.y)) < 2:
        result.note(f"every answer was class {int(answered.y[0])}")
    result.copy = fit_copy(answered, own, got.classes)
    return result


def fit_copy(answers: Labelled | None, own: Labelled | None, classes: int) -> SoftmaxRegression:
    """The copy: a softmax regression on the answers, with the attacker's own rows if any."""
    parts = [p for p in (own, answers) if p is not None and len(p.x)]
    if not parts:
        raise ValueError("no labelled rows to fit a copy on")
    x = np.vstack([p.x.reshape(len(p.x), -1) for p in parts])
    y = np.concatenate([p.y for p in parts])
    return SoftmaxRegression(max(classes, int(y.max()) + 1)).fit(x, y)


class _Answers:
    """The rows answered so far and their top-1 labels."""

    def __init__(self) -> None:
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []
        self.classes = 0

    def __len__(self) -> int:
        return sum(len(x) for x in self.xs)

    def add(self, rows: np.ndarray, answers: np.ndarray) -> None:
        self.xs.append(rows)
        self.ys.append(answers.argmax(axis=1))
        self.classes = max(self.classes, answers.shape[1])

    def labelled(self) -> Labelled:
        return Labelled(np.vstack(self.xs), np.concatenate(self.ys))


def _plan(
    cfg: ExtractionSettings,
    space: InputSpace,
    pool: np.ndarray | None,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Every query row at once, for the strategies that do not learn while they ask."""
    if cfg.strategy == "natural":
        return natural_rows(space, pool, n, rng, cfg.parts)
    if cfg.strategy == "uniform":
        return uniform_rows(space, n, rng)
    if cfg.strategy == "blend":
        if pool is None or len(pool) == 0:
            raise ValueError("the blend strategy needs public rows to blend")
        return blend_rows(space, pool, n, rng, cfg.parts)
    if cfg.strategy == "knockoff":
        low = float(space.lower.min()) if cfg.low is None else cfg.low
        high = float(space.upper.max()) if cfg.high is None else cfg.high
        return knockoff_rows(space, n, rng, low=low, high=high)
    raise ValueError(f"unknown strategy {cfg.strategy!r}")


def _send(
    oracle: Labeller, plan: np.ndarray, batch: int, got: _Answers, result: AttackResult
) -> None:
    for i in range(0, len(plan), batch):
        rows = plan[i : i + batch]
        answers = ask_or_skip(oracle, rows, result)
        if answers is not None:
            got.add(rows, answers)


def _jacobian(
    oracle: Labeller,
    space: InputSpace,
    pool: np.ndarray | None,
    cfg: ExtractionSettings,
    rng: np.random.Generator,
    got: _Answers,
    result: AttackResult,
    own: Labelled | None,
) -> None:
    """Papernot et al. 2017: label, fit the copy, augment every labelled row, repeat."""
    if pool is not None and len(pool):
        rows = natural_rows(space, pool, min(cfg.seeds, len(pool)), rng)
    else:
        rows = uniform_rows(space, cfg.seeds, rng)
    step = cfg.step * float(np.max(space.upper - space.lower))
    rounds = 0
    while oracle.remaining > 0 and len(rows):
        if len(rows) > oracle.remaining:
            rows = rows[rng.permutation(len(rows))[: oracle.remaining]]
        _send(oracle, rows, cfg.batch, got, result)
        rounds += 1
        if not len(got):
            return
        labelled = got.labelled()
        copy = fit_copy(labelled, own, got.classes)
        rows = jacobian_step(copy, labelled.x, labelled.y, space, step)
        result.details["jacobian_rounds"] = rounds
