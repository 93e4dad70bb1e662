"""Inversion from scores: climb the endpoint's confidence in a class, one estimate at a time.

In the spirit of Fredrikson et al. (CCS 2015), black-box: the gradient of
``log score[target]`` is estimated with NES (natural evolution strategies,
antithetic Gaussian probes, Ilyas et al. 2018) from the scores the endpoint
returns, and the guess moves a fixed distance along it, clipped to the input
box. Starting from a class-neutral point (the mean of public rows), the guess
drifts toward what the model takes as the class: for a model trained on
faces or digits, a recognisable representative of its training data.

One-hot answers carry no gradient: every probe scores 1 or 0 alike. After
``patience`` steps of labels only, the attack says so and stops. When the
target's score is hidden (e.g. not among the top k), the probes are spread
wider, up to ``max_sigma``, before the class is given up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .client import Oracle, Stopped, one_hot_rows
from .common import AttackResult, InputSpace, ask_or_skip

LABELS_ONLY = (
    "answers are one-hot labels: the score gradient is zero, so inversion from scores "
    "cannot work (try --attack label-only)"
)


@dataclass(frozen=True)
class NesSettings:
    """NES step: ``2 * pairs`` probes at distance ``sigma``, then a move of ``step`` (L2)."""

    sigma: float = 1.0
    pairs: int = 10
    step: float = 4.0
    max_sigma: float = 8.0
    patience: int = 3
    seed: int = 0


def invert(
    oracle: Oracle,
    space: InputSpace,
    targets: list[int],
    settings: NesSettings | None = None,
) -> AttackResult:
    """Reconstruct one representative input per target class from the endpoint's scores.

    The budget is shared: each class gets an equal share of what is left
    when its turn comes. Classes never reached keep the neutral start.
    """
    cfg = settings or NesSettings()
    result = AttackResult("inversion", targets=list(targets))
    guesses = np.tile(space.start, (len(targets), 1))
    seen = np.full(len(targets), np.nan)  # mean target score of the last step, as answered
    rng = np.random.default_rng(cfg.seed)
    result.reconstructions, result.details["endpoint_score"] = guesses, seen
    try:
        for i, target in enumerate(targets):
            share = oracle.remaining // (len(targets) - i)
            if not _climb(oracle, space, cfg, rng, result, i, target, share):
                break
    except Stopped as stop:
        result.stopped = stop.reason
    else:
        if LABELS_ONLY in result.notes:
            result.stopped = "labels_only"
        else:
            result.stopped = "budget" if oracle.remaining < 2 * cfg.pairs else "done"
    return result


def _climb(
    oracle: Oracle,
    space: InputSpace,
    cfg: NesSettings,
    rng: np.random.Generator,
    result: AttackResult,
    index: int,
    target: int,
    share: int,
) -> bool:
    """NES on one class within ``share`` rows; False when the whole attack should stop."""
    assert result.reconstructions is not None
    guess = result.reconstructions[index]
    free = space.free
    sigma, flat_steps, label_steps = cfg.sigma, 0, 0
    stop_at = oracle.remaining - share
    while oracle.remaining - 2 * cfg.pairs >= stop_at:
        u = rng.standard_normal((cfg.pairs, guess.size))
        u[:, ~free] = 0.0
        probes = space.clip(np.concatenate([guess + sigma * u, guess - sigma * u]))
        answers = ask_or_skip(oracle, probes, result)
        if answers is None:
            continue
        if target >= answers.shape[1]:
            result.note(f"class {target} is not among the {answers.shape[1]} classes answered")
            return True
        score = answers[:, target]
        result.details["endpoint_score"][index] = float(score.mean())
        if one_hot_rows(answers).all():
            label_steps += 1
            if label_steps >= cfg.patience:
                result.note(LABELS_ONLY)
                return False
        else:
            label_steps = 0
        value = np.log(np.maximum(score, 1e-12))
        grad = ((value[: cfg.pairs] - value[cfg.pairs :])[:, np.newaxis] * u).sum(axis=0)
        norm = float(np.linalg.norm(grad))
        if norm == 0.0:
            flat_steps += 1
            if sigma < cfg.max_sigma:
                sigma = min(cfg.max_sigma, sigma * 2)
            elif flat_steps >= cfg.patience + 3:
                result.note(f"class {target}: its score stayed flat (hidden or zero); gave up")
                return True
            continue
        flat_steps, sigma = 0, cfg.sigma
        guess[:] = space.clip(guess + cfg.step * grad / norm)
    return True
