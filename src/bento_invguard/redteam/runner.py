"""One red-team run: oracle, attack, leakage score, report (used by ``invguard attack``).

The attacker's knowledge: the endpoint URL and a key, the input shape and
range, and optionally public *reference* rows ``x`` from the same
distribution as the model's data (never its training rows). Inversion and
label-only use the reference only for class-blind statistics (mean, per-
feature range and spread). Extraction takes half of the reference rows, the
attacker's *pool*, with their labels: its own labelled data, which its
queries start from (natural, blend, jacobian) and its copy learns from
beside the endpoint's answers. The score of an extraction is the copy's
*gain*: its agreement with the endpoint on the other half, minus the
agreement of a copy of the pool alone (what the attacker had before asking).
Inversion and label-only never see the labels: they train the *judge* that
scores reconstructions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np

from ..audit.jsonsafe import json_safe
from .client import Oracle, Rejected, Stopped
from .common import AttackResult, InputSpace
from .extraction import ExtractionSettings, Labelled, extract
from .inversion import NesSettings, invert
from .label_only import ProbeSettings, reverse_correlation
from .reference import Reference, Split
from .scoring import SoftmaxRegression, agreement, fit_judge, inversion_leakage
from .strategies import Strategy

AttackName = Literal["inversion", "label-only", "extraction"]
ATTACKS: tuple[AttackName, ...] = ("inversion", "label-only", "extraction")


@dataclass(frozen=True)
class Plan:
    """What to run and against what."""

    attack: AttackName
    url: str
    key: str | None = None
    budget: int = 2000
    targets: tuple[int, ...] | None = None  # default: every class
    field: str = "x"
    shape: tuple[int, ...] = ()
    low: float = 0.0
    high: float = 1.0
    batch: int = 20
    seed: int = 0
    scores_field: str | None = None
    timeout: float = 10.0
    max_wait: float = 5.0
    max_wait_total: float = 60.0
    eval_key: str | None = None  # extraction: key that labels the held-out rows
    eval_rows: int = 200
    strategy: Strategy = "natural"  # extraction: where its queries come from


def run(
    plan: Plan,
    reference: Reference | None = None,
    *,
    client: httpx.Client | None = None,
    on_exchange: Callable[[Oracle], None] | None = None,
    holdout_labels: Callable[[np.ndarray], np.ndarray] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, Any], AttackResult]:
    """Run ``plan``; return the report (JSON-ready) and the attack's raw result.

    ``holdout_labels`` (benchmarks): labels the held-out rows offline, e.g.
    with the unguarded model, instead of asking the endpoint.
    """
    started = time.monotonic()
    features = int(np.prod(plan.shape)) if plan.shape else None
    if reference is not None:
        features = reference.x.shape[1]
        space = InputSpace.from_rows(reference.x, plan.low, plan.high)
    elif features is not None:
        space = InputSpace.from_range(features, plan.low, plan.high)
    else:
        raise ValueError("the input shape is needed: give a shape or reference rows")
    split = reference.split(plan.seed) if reference is not None else None
    oracle = _oracle(plan, plan.key, plan.budget, client, on_exchange=on_exchange, sleep=sleep)
    with oracle:
        classes = _first_contact(oracle, space)
        if classes is None and oracle.stopped is None and reference is not None:
            classes = int(reference.y.max()) + 1  # the start was refused: go on without it
        if classes is None:
            result = AttackResult(plan.attack, stopped=_stop_reason(oracle))
            if oracle.stopped is None:
                result.note(
                    "the first query (the neutral start) was refused: give --reference, "
                    "or --min/--max that the endpoint accepts"
                )
        else:
            result = _attack(plan, oracle, space, classes, split)
        if oracle.stats.answered == 0:
            result.note("the endpoint answered no query: leakage is not scored")
            leakage, evaluation = None, None
        else:
            leakage, evaluation = _score(
                plan, result, reference, split, classes, client, holdout_labels
            )
    report: dict[str, Any] = {
        "attack": plan.attack,
        "url": plan.url,
        "budget": plan.budget,
        "seed": plan.seed,
        "classes": classes,
        "targets": result.targets,
        "queries": oracle.stats.as_dict(),
        "stopped": result.stopped,
        "stop_detail": oracle.stopped.detail if oracle.stopped is not None else "",
        "leakage": leakage,
        "evaluation": evaluation,
        "notes": result.notes,
        "details": json_safe(result.details),
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    return report, result


def _oracle(
    plan: Plan,
    key: str | None,
    budget: int,
    client: httpx.Client | None,
    *,
    on_exchange: Callable[[Oracle], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Oracle:
    """An oracle for ``plan``'s endpoint, with this key and budget."""
    return Oracle(
        plan.url,
        key=key,
        budget=budget,
        field=plan.field,
        shape=plan.shape,
        scores_field=plan.scores_field,
        client=client,
        timeout=plan.timeout,
        max_wait=plan.max_wait,
        max_wait_total=plan.max_wait_total,
        on_exchange=on_exchange,
        sleep=sleep,
    )


def _first_contact(oracle: Oracle, space: InputSpace) -> int | None:
    """Ask the neutral start once: does the endpoint answer, and how many classes?"""
    try:
        return int(oracle.ask(space.start[np.newaxis]).shape[1])
    except (Stopped, Rejected):
        return None


def _stop_reason(oracle: Oracle) -> str:
    return oracle.stopped.reason if oracle.stopped is not None else "no_answer"


def _attack(
    plan: Plan, oracle: Oracle, space: InputSpace, classes: int, split: Split | None
) -> AttackResult:
    targets = list(plan.targets) if plan.targets is not None else list(range(classes))
    if plan.attack == "inversion":
        pairs = max(1, plan.batch // 2)
        return invert(oracle, space, targets, NesSettings(pairs=pairs, seed=plan.seed))
    if plan.attack == "label-only":
        cfg = ProbeSettings(batch=plan.batch, seed=plan.seed)
        return reverse_correlation(oracle, space, targets, cfg)
    settings = ExtractionSettings(
        plan.strategy, batch=plan.batch, seed=plan.seed, low=plan.low, high=plan.high
    )
    if split is None:
        return extract(oracle, space, None, settings)
    own = Labelled(split.pool_x, split.pool_y)
    return extract(oracle, space, split.pool_x, settings, own)


def _score(
    plan: Plan,
    result: AttackResult,
    reference: Reference | None,
    split: Split | None,
    classes: int | None,
    client: httpx.Client | None,
    holdout_labels: Callable[[np.ndarray], np.ndarray] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if reference is None or split is None:
        result.note("no --reference: leakage is not scored (the judge needs labelled rows)")
        return None, None
    n_classes = max(int(reference.y.max()) + 1, classes or 0)
    if plan.attack in ("inversion", "label-only"):
        if result.reconstructions is None or not result.targets:
            return None, None
        judge = fit_judge(reference.x, reference.y, n_classes)
        scored = inversion_leakage(
            judge,
            result.reconstructions,
            np.asarray(result.targets),
            reference=(reference.x, reference.y),
        )
        return scored.as_dict(), None
    if result.copy is None:
        return None, None
    x_hold, y_hold = split.held_x[: plan.eval_rows], split.held_y[: plan.eval_rows]
    copied = result.copy.predict(x_hold)
    evaluation: dict[str, Any] = {
        "held_out_rows": len(x_hold),
        "copy_accuracy": round(agreement(copied, y_hold), 4),
    }
    if holdout_labels is not None:
        labels: np.ndarray | None = np.asarray(holdout_labels(x_hold))
        evaluation["labelled_by"] = "offline"
    else:
        labels = _label_holdout(plan, x_hold, client, evaluation)
    if labels is None or len(labels) == 0:
        result.note("the endpoint did not label the held-out rows: agreement unknown")
        return None, evaluation
    answered = len(labels)
    score = agreement(copied[:answered], labels)
    # What the attacker's own labelled rows give, no query sent: the endpoint's
    # answers are worth only what the copy agrees beyond that.
    public = SoftmaxRegression(n_classes).fit(split.pool_x, split.pool_y)
    public_score = agreement(public.predict(x_hold[:answered]), labels)
    leakage = {
        "score": round(score - public_score, 4),
        "agreement": round(score, 4),
        "public_baseline": round(public_score, 4),
        "baseline": round(float(np.bincount(labels).max() / answered), 4),
        "rows": answered,
    }
    return leakage, evaluation


def _label_holdout(
    plan: Plan, x_hold: np.ndarray, client: httpx.Client | None, evaluation: dict[str, Any]
) -> np.ndarray | None:
    """The endpoint's top-1 on the held-out rows, asked with ``eval_key`` (default: the key)."""
    key = plan.eval_key or plan.key
    evaluation["labelled_by"] = "eval_key" if plan.eval_key else "attack_key"
    labels: list[np.ndarray] = []
    with _oracle(plan, key, len(x_hold), client) as oracle:
        for i in range(0, len(x_hold), plan.batch):
            try:
                labels.append(oracle.ask(x_hold[i : i + plan.batch]).argmax(axis=1))
            except (Stopped, Rejected):
                break  # agreement over the contiguous answered prefix only
        evaluation["queries"] = oracle.stats.as_dict()
    return np.concatenate(labels) if labels else None
