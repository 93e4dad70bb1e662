"""Leakage scores, judged by models the attacker never queried.

A reconstruction "leaks" class ``c`` when a *judge* (a softmax regression
trained on reference data disjoint from the served model's training data, and
never queried during the attack) recognises it as ``c``. Chance is
``1 / classes``: a judge shown meaningless images is right that often on
average. An extracted copy leaks the model when it agrees with the endpoint's
top-1 answer on held-out reference rows it was not trained on.

Everything here is plain NumPy, so ``invguard attack`` needs no extra package.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


class SoftmaxRegression:
    """Multinomial logistic regression fitted by full-batch gradient descent (Adam), NumPy only.

    Features are standardised with the training data's mean and std. Targets
    are class labels or, for distillation, rows of class probabilities.

    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> SoftmaxRegression(classes=2).fit(x, y).predict(np.array([[0.2], [2.8]])).tolist()
    [0, 1]
    """

    def __init__(
        self,
        classes: int,
        *,
        l2: float = 1e-3,
        steps: int = 400,
        learning_rate: float = 0.05,
    ) -> None:
        self.classes = classes
        self.l2 = l2
        self.steps = steps
        self.learning_rate = learning_rate
        self.mean = np.zeros(0)
        self.scale = np.ones(0)
        self.coef = np.zeros((0, classes))
        self.intercept = np.zeros(classes)

    def fit(self, x: np.ndarray, y: np.ndarray) -> SoftmaxRegression:
        """Fit on rows ``x`` and labels ``y`` (n,) or target probabilities ``y`` (n, classes)."""
        if len(x) == 0:
            raise ValueError("cannot fit on zero rows")
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        targets = _targets(np.asarray(y), self.classes)
        if len(targets) != len(x):
            raise ValueError(f"{len(x)} rows but {len(targets)} targets")
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale = np.where(std > 1e-9, std, 1.0)
        z = (x - self.mean) / self.scale
        n, d = z.shape
        self.coef = np.zeros((d, self.classes))
        self.intercept = np.log(np.clip(targets.mean(axis=0), 1e-6, None))
        with _one_blas_thread():
            self._descend(z, targets, n, self.learning_rate)
        return self

    def _descend(self, z: np.ndarray, targets: np.ndarray, n: int, lr: float) -> None:
        m_w, v_w = np.zeros_like(self.coef), np.zeros_like(self.coef)
        m_b, v_b = np.zeros(self.classes), np.zeros(self.classes)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        for t in range(1, self.steps + 1):
            p = _softmax(z @ self.coef + self.intercept)
            err = (p - targets) / n
            g_w = z.T @ err + self.l2 * self.coef
            g_b = err.sum(axis=0)
            m_w = beta1 * m_w + (1 - beta1) * g_w
            v_w = beta2 * v_w + (1 - beta2) * g_w**2
            m_b = beta1 * m_b + (1 - beta1) * g_b
            v_b = beta2 * v_b + (1 - beta2) * g_b**2
            correction = np.sqrt(1 - beta2**t) / (1 - beta1**t)
            self.coef -= lr * correction * m_w / (np.sqrt(v_w) + eps)
            self.intercept -= lr * correction * m_b / (np.sqrt(v_b) + eps)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, ``(n, classes)``."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return _softmax(((x - self.mean) / self.scale) @ self.coef + self.intercept)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Top-1 class per row."""
        return np.asarray(self.predict_proba(x).argmax(axis=1))


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Small products are fastest on one BLAS thread (many threads thrash a busy machine).

    Uses threadpoolctl when it is installed (scikit-learn brings it); else a no-op.
    """
    try:
        threadpoolctl = importlib.import_module("threadpoolctl")
    except ImportError:
        yield
        return
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def _targets(y: np.ndarray, classes: int) -> np.ndarray:
    if y.ndim == 2:
        if y.shape[1] != classes:
            raise ValueError(f"targets have {y.shape[1]} columns, expected {classes}")
        total = y.sum(axis=1, keepdims=True)
        return np.asarray(np.where(total > 0, y / np.where(total > 0, total, 1), 1 / classes))
    labels = y.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1}")
    return np.asarray(np.eye(classes)[labels])


@dataclass(frozen=True)
class InversionLeakage:
    """How well a judge recognises reconstructions as the classes they were made for."""

    accuracy: float  # share of reconstructions the judge labels as their target class
    target_probability: float  # mean judge probability of the target class
    chance: float  # 1 / classes
    recognised: tuple[bool, ...]  # per reconstruction
    judge_accuracy: float  # the judge's own accuracy on its training reference (sanity)

    @property
    def advantage(self) -> float:
        """Accuracy above chance, scaled so that 0 is chance and 1 is perfect (never < 0)."""
        return max(0.0, (self.accuracy - self.chance) / (1.0 - self.chance))

    def as_dict(self) -> dict[str, object]:
        return {
            "score": round(self.accuracy, 4),
            "chance": round(self.chance, 4),
            "advantage": round(self.advantage, 4),
            "target_probability": round(self.target_probability, 4),
            "recognised": list(self.recognised),
            "judge_reference_accuracy": round(self.judge_accuracy, 4),
        }


def fit_judge(x: np.ndarray, y: np.ndarray, classes: int) -> SoftmaxRegression:
    """The judge: a softmax regression on reference data the attacker never sent."""
    return SoftmaxRegression(classes).fit(x, y)


def inversion_leakage(
    judge: SoftmaxRegression,
    reconstructions: np.ndarray,
    targets: np.ndarray,
    *,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> InversionLeakage:
    """Score reconstructions (one row per target class) with ``judge``.

    ``reference`` (x, y) only reports the judge's own accuracy on it.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if len(reconstructions) != len(targets):
        raise ValueError("one reconstruction per target is needed")
    if len(targets) == 0:
        raise ValueError("no reconstruction to score")
    proba = judge.predict_proba(reconstructions)
    hits = proba.argmax(axis=1) == targets
    own = float("nan")
    if reference is not None:
        own = float((judge.predict(reference[0]) == np.asarray(reference[1])).mean())
    return InversionLeakage(
        accuracy=float(hits.mean()),
        target_probability=float(proba[np.arange(len(targets)), targets].mean()),
        chance=1.0 / judge.classes,
        recognised=tuple(bool(h) for h in hits),
        judge_accuracy=own,
    )


def agreement(predicted: np.ndarray, reference_labels: np.ndarray) -> float:
    """Share of rows on which two labelings agree (top-1 agreement)."""
    a = np.asarray(predicted).ravel()
    b = np.asarray(reference_labels).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cannot compare {a.shape} labels with {b.shape}")
    if a.size == 0:
        raise ValueError("no rows to compare")
    return float((a == b).mean())
