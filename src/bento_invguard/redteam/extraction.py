"""Extraction: label queries with the endpoint and train a copy of the model on its answers.

Queries are the attacker's public rows (the reference pool) first, then
random convex mixes of three of them once the pool is used up (Dirichlet
weights); without a pool, rows uniform in the input box. The copy is a
softmax regression (NumPy, :class:`~bento_invguard.redteam.scoring.SoftmaxRegression`)
trained on the endpoint's top-1 answers: labels survive every output mode
and every defence that keeps the argmax, which is exactly what a guard
that preserves utility must keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .client import Oracle, Stopped
from .common import AttackResult, InputSpace, ask_or_skip
from .scoring import SoftmaxRegression


@dataclass(frozen=True)
class ExtractionSettings:
    """``batch`` rows per request; ``parts`` pool rows per synthetic mix."""

    batch: int = 20
    parts: int = 3
    seed: int = 0


def query_rows(
    space: InputSpace, pool: np.ndarray | None, n: int, rng: np.random.Generator, parts: int = 3
) -> np.ndarray:
    """``n`` query rows: the pool (shuffled), then mixes of pool rows; uniform without a pool."""
    if pool is None or len(pool) == 0:
        return space.clip(rng.uniform(space.lower, space.upper, size=(n, space.features)))
    flat = np.asarray(pool, dtype=np.float64).reshape(len(pool), -1)
    first = flat[rng.permutation(len(flat))][:n]
    extra = n - len(first)
    if extra <= 0:
        return first
    idx = rng.integers(0, len(flat), size=(extra, parts))
    weights = rng.dirichlet(np.ones(parts), size=extra)
    mixes = np.einsum("nk,nkf->nf", weights, flat[idx])
    return np.vstack([first, space.clip(mixes)])


def extract(
    oracle: Oracle,
    space: InputSpace,
    pool: np.ndarray | None,
    settings: ExtractionSettings | None = None,
) -> AttackResult:
    """Spend the budget on labelled queries, then fit a copy on the answers received."""
    cfg = settings or ExtractionSettings()
    result = AttackResult("extraction")
    rng = np.random.default_rng(cfg.seed)
    plan = query_rows(space, pool, oracle.remaining, rng, cfg.parts)
    xs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    classes = 0
    try:
        for i in range(0, len(plan), cfg.batch):
            rows = plan[i : i + cfg.batch]
            answers = ask_or_skip(oracle, rows, result)
            if answers is None:
                continue
            xs.append(rows)
            labels.append(answers.argmax(axis=1))
            classes = max(classes, answers.shape[1])
        result.stopped = "budget"
    except Stopped as stop:
        result.stopped = stop.reason
    result.details["trained_on"] = int(sum(len(x) for x in xs))
    if not xs:
        result.note("no answer to train a copy on")
        return result
    y = np.concatenate(labels)
    if len(np.unique(y)) < 2:
        result.note(f"every answer was class {int(y[0])}: the copy always says so")
    result.copy = SoftmaxRegression(classes).fit(np.vstack(xs), y)
    return result
