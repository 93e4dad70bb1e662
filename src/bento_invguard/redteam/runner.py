"""One red-team run: oracle, attack, leakage score, report (used by ``invguard attack``).

The attacker's knowledge: the endpoint URL and a key, the input shape and
range, and optionally public *reference* rows ``x`` from the same
distribution as the model's data (never its training rows). Inversion and
label-only use the reference only for class-blind statistics (mean, per-
feature range and spread); extraction sends half of the reference rows as
queries. The labels ``y`` of the reference are never used by an attack:
they train the *judge* that scores reconstructions, and measure the copy's
accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from .client import Oracle, Rejected, Stopped
from .common import AttackResult, InputSpace
from .extraction import ExtractionSettings, extract
from .inversion import NesSettings, invert
from .label_only import ProbeSettings, reverse_correlation
from .scoring import SoftmaxRegression, agreement, fit_judge, inversion_leakage

AttackName = Literal["inversion", "label-only", "extraction"]
ATTACKS: tuple[AttackName, ...] = ("inversion", "label-only", "extraction")


@dataclass(frozen=True)
class Reference:
    """Public labelled rows: the attacker's pool and held-out rows, the judge's training data."""

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """An ``.npz`` with arrays ``x`` (n, features...) and ``y`` (n,) of class indices."""
        with np.load(path, allow_pickle=False) as data:
            missing = {"x", "y"} - set(data.files)
            if missing:
                raise ValueError(f"the file has no array named {', '.join(sorted(missing))}")
            x, y = np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"])
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) < 4:
            raise ValueError(
                f"need x of shape (n, features) and y of shape (n,), n >= 4; "
                f"got x {x.shape} and y {y.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("x holds NaN or infinite values")
        if y.dtype.kind not in "iu" or y.min() < 0:
            raise ValueError("y must hold class indices 0, 1, 2, ...")
        return cls(x.reshape(len(x), -1), y.astype(np.int64))

    def split(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pool x, held-out x, held-out y): a seeded half/half split."""
        order = np.random.default_rng(seed).permutation(len(self.x))
        half = len(order) // 2
        return self.x[order[:half]], self.x[order[half:]], self.y[order[half:]]

    def pool_labels(self, seed: int = 0) -> np.ndarray:
        """True labels of :meth:`split`'s pool rows: for scoring only, attacks never see them."""
        order = np.random.default_rng(seed).permutation(len(self.x))
        return self.y[order[: len(order) // 2]]


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
    oracle = Oracle(
        plan.url,
        key=plan.key,
        budget=plan.budget,
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
            result = _attack(plan, oracle, space, classes, reference)
        leakage, evaluation = _score(plan, result, reference, classes, client, holdout_labels)
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
        "details": _plain(result.details),
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    return report, result


def _first_contact(oracle: Oracle, space: InputSpace) -> int | None:
    """Ask the neutral start once: does the endpoint answer, and how many classes?"""
    try:
        return int(oracle.ask(space.start[np.newaxis]).shape[1])
    except (Stopped, Rejected):
        return None


def _stop_reason(oracle: Oracle) -> str:
    return oracle.stopped.reason if oracle.stopped is not None else "no_answer"


def _attack(
    plan: Plan, oracle: Oracle, space: InputSpace, classes: int, reference: Reference | None
) -> AttackResult:
    targets = list(plan.targets) if plan.targets is not None else list(range(classes))
    if plan.attack == "inversion":
        pairs = max(1, plan.batch // 2)
        return invert(oracle, space, targets, NesSettings(pairs=pairs, seed=plan.seed))
    if plan.attack == "label-only":
        cfg = ProbeSettings(batch=plan.batch, seed=plan.seed)
        return reverse_correlation(oracle, space, targets, cfg)
    pool = reference.split(plan.seed)[0] if reference is not None else None
    return extract(oracle, space, pool, ExtractionSettings(batch=plan.batch, seed=plan.seed))


def _score(
    plan: Plan,
    result: AttackResult,
    reference: Reference | None,
    classes: int | None,
    client: httpx.Client | None,
    holdout_labels: Callable[[np.ndarray], np.ndarray] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if reference is None:
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
    _, x_hold, y_hold = reference.split(plan.seed)
    x_hold, y_hold = x_hold[: plan.eval_rows], y_hold[: plan.eval_rows]
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
    baseline = float(np.bincount(labels).max() / answered)
    score = agreement(copied[:answered], labels)
    # What the attacker's own public rows give with their true labels, no query sent:
    # the endpoint's answers leak only what the copy agrees beyond that.
    pool = reference.split(plan.seed)[0]
    public = SoftmaxRegression(n_classes).fit(pool, reference.pool_labels(plan.seed))
    public_score = agreement(public.predict(x_hold[:answered]), labels)
    leakage = {
        "score": round(score, 4),
        "baseline": round(baseline, 4),
        "public_baseline": round(public_score, 4),
        "gain_over_public": round(score - public_score, 4),
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
    with Oracle(
        plan.url,
        key=key,
        budget=len(x_hold),
        field=plan.field,
        shape=plan.shape,
        scores_field=plan.scores_field,
        client=client,
        timeout=plan.timeout,
        max_wait=plan.max_wait,
        max_wait_total=plan.max_wait_total,
    ) as oracle:
        for i in range(0, len(x_hold), plan.batch):
            try:
                labels.append(oracle.ask(x_hold[i : i + plan.batch]).argmax(axis=1))
            except (Stopped, Rejected):
                break  # agreement over the contiguous answered prefix only
        evaluation["queries"] = oracle.stats.as_dict()
    return np.concatenate(labels) if labels else None


def _plain(value: Any) -> Any:
    """JSON-ready copy: arrays to lists, NaN to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value
