"""Query attacks of the detection benchmark, as plain functions of ``ask(rows) -> answers``.

``answers`` is ``(n, classes)``: full scores, truncated scores or a one-hot
label per row. When the defender refuses the key (over HTTP: a 403 or 429),
``ask`` raises :class:`Refused` and the attack stops with what it has; when it
refuses one query (a 422), ``ask`` raises :class:`Rejected` and the attack
goes on with other queries where it can. Red-team runs over HTTP are
``invguard attack`` (:mod:`bento_invguard.redteam`), not this module.

>>> import numpy as np
>>> def ask(rows):  # a two-class "model" that answers full scores
...     z = np.exp(rows @ np.eye(2))
...     return z / z.sum(axis=1, keepdims=True)
>>> low, high = np.zeros(2), np.ones(2)
>>> run = nes_inversion(ask, 40, target=0, start=np.full(2, 0.5), lower=low, upper=high, step=0.2)
>>> run.queries, run.stopped
(40, 'budget')
>>> bool(run.output["guess"][0] > run.output["guess"][1])
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Ask = Callable[[np.ndarray], np.ndarray]


class Refused(Exception):
    """Raised by an ``ask`` function when the defender refuses the key (block, rate limit)."""


class Rejected(Refused):
    """Raised by an ``ask`` function when one query is refused on its own (invalid input).

    The attack may go on with other queries; its rows still count as sent.
    """


class _Spent(Exception):
    """The attack's row budget is used up."""


@dataclass
class AttackRun:
    """What one attack stream did: rows answered, why it stopped, what it got."""

    name: str
    queries: int = 0  # rows answered
    calls: int = 0
    rejected: int = 0  # rows refused one query at a time (e.g. invalid input)
    stopped: str = "budget"  # "budget" or the reason of the refusal
    output: dict[str, Any] = field(default_factory=dict)


class _Oracle:
    """``ask`` with a row budget: counts rows, trims the last batch, stops at the budget."""

    def __init__(self, ask: Ask, budget: int, run: AttackRun) -> None:
        self._ask = ask
        self._budget = budget
        self._run = run

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        left = self._budget - self._run.queries - self._run.rejected
        if left <= 0:
            raise _Spent
        rows = rows[:left]
        self._run.calls += 1
        try:
            answers = np.asarray(self._ask(rows), dtype=np.float64)
        except Rejected:
            self._run.rejected += len(rows)
            raise
        self._run.queries += len(rows)
        return answers


def _drive(run: AttackRun, attack: Callable[[], None]) -> AttackRun:
    try:
        attack()
    except _Spent:
        run.stopped = "budget"
    except Refused as refusal:
        run.stopped = str(refusal) or "refused"
    return run


def _batched(oracle: _Oracle, rows: np.ndarray, batch: int) -> np.ndarray:
    """Answers for ``rows`` sent ``batch`` rows per call; a refusal mid-way propagates."""
    parts = [oracle(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    return np.concatenate(parts)


def nes_inversion(
    ask: Ask,
    budget: int,
    *,
    target: int,
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    sigma: float = 0.5,
    pairs: int = 10,
    step: float = 8.0,
    seed: int = 0,
    batch: int = 1,
    features: np.ndarray | None = None,
) -> AttackRun:
    """Black-box inversion: climb ``log score[target]`` with NES gradient estimates.

    Each step sends ``2 * pairs`` rows ``guess +- sigma * u`` (antithetic
    Gaussian directions, clipped to ``[lower, upper]``), estimates the
    gradient from the returned scores and moves the guess ``step`` (L2, in
    input units) along it. ``sigma`` is how far apart the probes are: small
    is precise, large spaces the probes out. ``features`` (a boolean mask)
    restricts the probes to the features that vary in the attacker's public
    samples; by default every feature is probed. Output: the final ``guess``
    and the ``trace`` of the mean target score seen per step.
    """
    run = AttackRun(f"nes_inversion(sigma={sigma:g})")
    oracle = _Oracle(ask, budget, run)
    rng = np.random.default_rng(seed)
    guess = np.clip(np.asarray(start, dtype=np.float64), lower, upper)
    trace: list[float] = []
    run.output.update(guess=guess, trace=trace)

    def attack() -> None:
        nonlocal guess
        while True:
            u = rng.standard_normal((pairs, guess.size))
            if features is not None:
                u[:, ~features] = 0.0
            probes = np.clip(np.concatenate([guess + sigma * u, guess - sigma * u]), lower, upper)
            answers = _batched(oracle, probes, batch)
            value = np.log(np.maximum(answers[:, target], 1e-12))
            trace.append(float(answers[:, target].mean()))
            slope = (value[:pairs] - value[pairs:])[:, np.newaxis] * u
            grad = slope.sum(axis=0)
            norm = float(np.linalg.norm(grad))
            if norm > 0:
                guess = np.clip(guess + step * grad / norm, lower, upper)
                run.output["guess"] = guess

    return _drive(run, attack)
