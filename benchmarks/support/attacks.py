"""Attack query streams against a served classifier: inversion, boundary probing, extraction.

Every attack is a plain function of a query function ``ask(rows) -> answers``
and a ``budget`` (rows it may send). ``answers`` is ``(n, classes)``: full
scores, truncated scores or a one-hot label per row; the attacks adapt to
what they get back, as a real attacker would. Label-only attacks use the
argmax alone. When the defender refuses the key, ``ask`` raises
:class:`Refused` (over HTTP: a 403 or 429) and the attack stops with what it
has; when it refuses one query (a 422), ``ask`` raises :class:`Rejected` and
the attack goes on with other queries where it can. These functions drive
the in-process benchmark (``benchmarks/detection.py``); red-team runs over
HTTP are ``invguard attack`` (:mod:`bento_invguard.redteam`), not this
module. :func:`diluted` wraps any ``ask`` to hide each probe among natural
queries.

>>> import numpy as np
>>> w = np.eye(2)
>>> def ask(rows):  # a two-class "model" that answers one-hot labels
...     return np.eye(2)[(rows @ w).argmax(axis=1)]
>>> run = boundary_search(ask, 40, pool=np.array([[1.0, 0.0], [0.0, 1.0]]), tol=1e-3)
>>> run.queries, run.stopped
(40, 'budget')
>>> bool(np.allclose(run.output["points"][0], [0.5, 0.5], atol=1e-3))
True
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Ask = Callable[[np.ndarray], np.ndarray]
Sampler = Callable[[np.random.Generator, int], np.ndarray]


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


def finite_difference_inversion(
    ask: Ask,
    budget: int,
    *,
    target: int,
    start: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    delta: float = 1.0,
    step: float = 8.0,
    batch: int = 1,
) -> AttackRun:
    """Black-box inversion with coordinate-wise finite differences.

    Each step sends the guess and the guess with one feature raised by
    ``delta`` (``1 + features`` rows), takes the forward differences of
    ``log score[target]`` as the gradient and moves ``step`` along it.
    """
    run = AttackRun(f"finite_difference_inversion(delta={delta:g})")
    oracle = _Oracle(ask, budget, run)
    guess = np.clip(np.asarray(start, dtype=np.float64), lower, upper)
    run.output.update(guess=guess, trace=[])

    def attack() -> None:
        nonlocal guess
        eye = np.eye(guess.size)
        while True:
            probes = np.clip(np.vstack([guess, guess + delta * eye]), lower, upper)
            answers = _batched(oracle, probes, batch)
            value = np.log(np.maximum(answers[:, target], 1e-12))
            run.output["trace"].append(float(answers[0, target]))
            moved = probes[1:] - guess
            span = np.where(np.abs(moved).sum(axis=1) > 0, moved.sum(axis=1), 1.0)
            grad = (value[1:] - value[0]) / span
            norm = float(np.linalg.norm(grad))
            if norm > 0:
                guess = np.clip(guess + step * grad / norm, lower, upper)
                run.output["guess"] = guess

    return _drive(run, attack)


def boundary_search(
    ask: Ask,
    budget: int,
    *,
    pool: np.ndarray,
    tol: float = 1e-3,
    seed: int = 0,
) -> AttackRun:
    """Label-only probing: binary search for the decision boundary between pairs of inputs.

    Picks two rows of ``pool`` (inputs the attacker holds, e.g. public
    samples), asks for both labels and, when they differ, bisects the
    segment between them until it is shorter than ``tol`` (as a fraction of
    the segment), using only the returned label (the argmax). Output: the
    boundary ``points`` found and the class ``pairs`` they separate.
    """
    run = AttackRun(f"boundary_search(tol={tol:g})")
    oracle = _Oracle(ask, budget, run)
    rng = np.random.default_rng(seed)
    points: list[np.ndarray] = []
    classes: list[tuple[int, int]] = []
    run.output.update(points=points, pairs=classes)

    def label(row: np.ndarray) -> int:
        return int(oracle(row[np.newaxis]).argmax(axis=1)[0])

    def attack() -> None:
        while True:
            i, j = rng.choice(len(pool), size=2, replace=False)
            a, b = pool[i].astype(np.float64), pool[j].astype(np.float64)
            try:
                la, lb = label(a), label(b)
                if la == lb:
                    continue
                lo, hi = 0.0, 1.0
                while hi - lo > tol:
                    mid = (lo + hi) / 2
                    if label((1 - mid) * a + mid * b) == la:
                        lo = mid
                    else:
                        hi = mid
            except Rejected:
                continue  # an input the service refuses: try another pair
            points.append((1 - hi) * a + hi * b)
            classes.append((la, lb))

    return _drive(run, attack)


def diluted(ask: Ask, cover: np.ndarray, per_probe: int, seed: int = 0) -> Ask:
    """``ask`` that hides each probe row among ``per_probe`` natural rows of ``cover``.

    Before every probe row it sends ``per_probe`` rows drawn from ``cover``
    (inputs that look like ordinary traffic), one per call, and returns only
    the probes' answers: an adaptive attacker diluting share-based signals.
    The cover rows spend the attacker's real query budget but not the
    attack's own ``budget`` argument.
    """
    rng = np.random.default_rng(seed)

    def hidden(rows: np.ndarray) -> np.ndarray:
        answers = []
        for row in rows:
            for i in rng.integers(0, len(cover), size=per_probe):
                with suppress(Rejected):  # a refused cover row is only cover lost
                    ask(cover[i : i + 1])
            answers.append(ask(row[np.newaxis]))
        return np.concatenate(answers)

    return hidden


def uniform_sampler(lower: np.ndarray, upper: np.ndarray) -> Sampler:
    """Synthetic rows uniform within per-feature bounds (e.g. the reference profile's)."""

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(lower, upper, size=(n, len(lower)))

    return sample


def mixture_sampler(pool: np.ndarray, parts: int = 3) -> Sampler:
    """Random convex mixes of ``parts`` rows of ``pool`` (Dirichlet weights)."""

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        idx = rng.integers(0, len(pool), size=(n, parts))
        weights = rng.dirichlet(np.ones(parts), size=n)
        mixed: np.ndarray = np.einsum("nk,nkf->nf", weights, pool[idx].astype(np.float64))
        return mixed

    return sample


def synthetic_extraction(
    ask: Ask,
    budget: int,
    *,
    sampler: Sampler,
    seed: int = 0,
    batch: int = 1,
) -> AttackRun:
    """Extraction: label synthetic queries with the served model, to train a copy on.

    Output: the rows sent (``x``) and the answers (``answers``); train a copy
    with :func:`fit_copy`.
    """
    run = AttackRun("synthetic_extraction")
    oracle = _Oracle(ask, budget, run)
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    answers: list[np.ndarray] = []

    def attack() -> None:
        while True:
            rows = sampler(rng, batch)
            try:
                answers.append(oracle(rows))
            except Rejected:
                continue  # the service refused these rows: draw others
            xs.append(rows[: len(answers[-1])])

    _drive(run, attack)
    run.output["x"] = np.concatenate(xs) if xs else np.zeros((0, 0))
    run.output["answers"] = np.concatenate(answers) if answers else np.zeros((0, 0))
    return run


def fit_copy(x: np.ndarray, answers: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A standardised logistic-regression copy trained on the argmax of the answers.

    Returns the copy's ``predict(rows) -> labels``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = answers.argmax(axis=1)
    if len(np.unique(labels)) < 2:
        only = int(labels[0]) if len(labels) else 0
        return lambda rows: np.full(len(rows), only)
    copy = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    copy.fit(x, labels)
    return lambda rows: np.asarray(copy.predict(np.asarray(rows, dtype=np.float64)))
