"""ART's evasion attacks, run through a :class:`~support.ways.Stream`.

Each attack moves a natural held-out input ``x`` (class ``A``) across the
decision boundary through ART's ``BlackBoxClassifier`` whose ``predict_fn``
is the stream (so every row goes through the guard). Decision-based attacks
(``hsj``, ``boundary``, ``signopt``) get the label tier; ``zoo`` (score-based)
the full tier. Starts: ``natural`` (a held-out input of another class:
``x_adv_init`` for HopSkipJump and Boundary; SignOPT only takes a start for a
targeted attack, so there it runs targeted at that input's class with it as
``x_init``), ``default`` (ART's own random initialisation), and for ZOO
``own`` (ZOO starts from ``x`` itself and takes no start).

Whatever ART returns, or wherever it stops (a refusal, the budget), the
attacker keeps the closest probe it was told is of another class than ``A``;
the verdict checks that probe against the unguarded model.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .attacks import Refused
from .datasets import Dataset
from .ways import Stream

EVASION = ("hsj", "boundary", "signopt", "zoo")
TIER = {"hsj": "public", "boundary": "public", "signopt": "public", "zoo": "trusted"}
STARTS = {
    "hsj": ("natural", "default"),
    "boundary": ("natural", "default"),
    "signopt": ("natural", "default"),
    "zoo": ("own",),
}


@dataclass(frozen=True)
class EvasionCase:
    """One target: the input ``x`` of class ``label`` and a natural start of another class."""

    x: np.ndarray
    label: int
    start: np.ndarray
    start_label: int


def evasion_cases(d: Dataset, n: int) -> list[EvasionCase]:
    """``n`` targets of different classes, each correctly classified, with its natural start."""
    predicted = d.model.predict_proba(d.x_test).argmax(axis=1)
    good = predicted == d.y_test
    cases = []
    for t in range(n):
        a, b = (3 * t) % d.classes, (3 * t + 5) % d.classes
        xa = d.x_test[good & (d.y_test == a)][t]
        xb = d.x_test[good & (d.y_test == b)][t]
        cases.append(EvasionCase(xa.astype(np.float64), a, xb.astype(np.float64), b))
    return cases


class Closest:
    """A stream watcher: the closest probe to ``x`` that the answers said is not class ``A``."""

    def __init__(self, x: np.ndarray, label: int) -> None:
        self.x, self.label = x, label
        self.best: np.ndarray | None = None
        self.distance = float("inf")

    def __call__(self, rows: np.ndarray, answers: np.ndarray) -> None:
        other = answers.argmax(axis=1) != self.label
        if other.any():
            d = np.linalg.norm(rows[other] - self.x, axis=1)
            i = int(d.argmin())
            if d[i] < self.distance:
                self.distance, self.best = float(d[i]), rows[other][i].copy()


def _attack(name: str, classifier: Any, budget: int, start: str, scale: float) -> Any:
    """The ART attack; ZOO's steps are in units of the data set's range (``scale``: range / 16)."""
    from art.attacks.evasion import BoundaryAttack, HopSkipJump, SignOPTAttack, ZooAttack

    if name == "hsj":
        return HopSkipJump(
            classifier, batch_size=256, max_iter=50, max_eval=1000, init_eval=100, verbose=False
        )
    if name == "boundary":
        return BoundaryAttack(
            classifier, batch_size=256, targeted=False, max_iter=budget, verbose=False
        )
    if name == "signopt":
        return SignOPTAttack(
            classifier, targeted=start == "natural", query_limit=budget, batch_size=256
        )
    if name == "zoo":
        return ZooAttack(
            classifier,
            learning_rate=0.5 * scale,
            max_iter=budget,
            initial_const=100.0,
            abort_early=False,
            use_resize=False,
            use_importance=False,
            nb_parallel=64,
            variable_h=0.01 * scale,
            verbose=False,
        )
    raise ValueError(f"unknown evasion attack {name!r}")


def run_evasion(
    name: str, start: str, case: EvasionCase, d: Dataset, stream: Stream
) -> dict[str, object]:
    """Run one ART attack through ``stream``; the closest adversarial probe it was told of."""
    from art.estimators.classification import BlackBoxClassifier

    watch = Closest(case.x, case.label)
    stream.watch = watch
    classifier = BlackBoxClassifier(
        stream, input_shape=(d.features,), nb_classes=d.classes, clip_values=(d.low, d.high)
    )
    attack = _attack(name, classifier, stream.budget, start, (d.high - d.low) / 16.0)
    x = case.x[np.newaxis]
    kwargs: dict[str, Any] = {}
    y: np.ndarray | None = None
    if start == "natural" and name in ("hsj", "boundary"):
        kwargs["x_adv_init"] = case.start[np.newaxis]
    elif start == "natural" and name == "signopt":
        kwargs["x_init"] = case.start[np.newaxis]
        y = np.array([case.start_label])
    error = ""
    with art_logs_off():
        try:
            attack.generate(x, y=y, **kwargs)
        except Refused as refusal:
            stream.ledger.stopped = str(refusal) or "refused"
        except Exception as exc:  # ART failing on an answer it did not expect
            error = f"{type(exc).__name__}: {exc}"[:200]
            stream.ledger.stopped = "art_error"
    adversarial = False
    if watch.best is not None:
        true_label = int(d.model.predict_proba(watch.best[np.newaxis]).argmax(axis=1)[0])
        adversarial = true_label != case.label
    return {
        "label": case.label,
        "start_distance": round(float(np.linalg.norm(case.start - case.x)), 4),
        "believed_distance": None if watch.best is None else round(watch.distance, 4),
        "adversarial": adversarial,
        "distance": round(watch.distance, 4) if adversarial else None,
        "error": error,
    }


@contextlib.contextmanager
def art_logs_off() -> Iterator[None]:
    logger = logging.getLogger("art")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
