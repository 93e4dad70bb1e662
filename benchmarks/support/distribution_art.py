"""The distribution signal against query streams that IBM ART makes.

ART (adversarial-robustness-toolbox) queries the served model through its
``BlackBoxClassifier``, whose ``predict_fn`` records every row it is asked.
The recorded stream (its first :data:`~support.distribution.BUDGET` rows) is
then sent to the monitor one row per query, on one key and rotated over
several keys, exactly as :func:`support.distribution.first_flag` sends the
hand-made streams:

- ``art_knockoff_random``: ``KnockoffNets`` with random sampling over
  out-of-domain natural images (grey crops of scikit-learn's sample
  photographs, as ``invguard attack``'s ``knockoff`` strategy makes them);
- ``art_knockoff_adaptive``: ``KnockoffNets`` with adaptive sampling (its
  reward-driven choice of class) over a labelled data set of another source:
  the other data set's digits resized to this one's input (MNIST for 8x8
  digits, 8x8 digits for MNIST);
- ``art_hopskipjump``: ``HopSkipJump`` (decision-based evasion) from natural
  held-out inputs, each started from a natural input of another class.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from bento_invguard.redteam.common import InputSpace
from bento_invguard.redteam.strategies import knockoff_rows

from .datasets import Dataset
from .datasets import load as load_uncached
from .distribution import Setup, flags
from .distribution_streams import BUDGET
from .evasion import art_logs_off

#: Each data set is loaded (and its model trained) once: each one is the other's source.
load = functools.cache(load_uncached)
ART_STREAMS = ("art_knockoff_random", "art_knockoff_adaptive", "art_hopskipjump")


class Recorder:
    """``predict_fn`` for ART: the served model's scores, every row asked kept in order."""

    def __init__(self, data: Dataset) -> None:
        self.data = data
        self.rows: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        self.rows.extend(flat)
        return self.data.model.predict_proba(flat)

    @property
    def stream(self) -> np.ndarray:
        return np.asarray(self.rows[:BUDGET])


def art_table(setup: Setup, keys: tuple[int, ...], seed: int = 0) -> list[dict[str, Any]]:
    """One row per ART stream and key count: rows to the first flag, and why."""
    out: list[dict[str, Any]] = []
    for name in ART_STREAMS:
        rows = record(name, setup, seed)
        for k in keys:
            out.append(flags(setup, name, rows, k))
    return out


def record(name: str, setup: Setup, seed: int = 0) -> np.ndarray:
    """The first rows ART asks the served model in attack ``name``."""
    from art.estimators.classification import BlackBoxClassifier

    d = setup.data
    recorder = Recorder(d)
    victim = BlackBoxClassifier(
        recorder, input_shape=(d.features,), nb_classes=d.classes, clip_values=(d.low, d.high)
    )
    np.random.seed(seed)  # ART samples with numpy's global generator
    rng = np.random.default_rng(seed)
    with art_logs_off():
        if name == "art_knockoff_random":
            space = InputSpace.from_range(d.features, d.low, d.high)
            x = knockoff_rows(space, 4 * BUDGET, rng, low=d.low, high=d.high)
            _knockoff(victim, "random").extract(x, thieved_classifier=_thief(d))
        elif name == "art_knockoff_adaptive":
            x, y = _other_source(d)
            _knockoff(victim, "adaptive").extract(x, y, thieved_classifier=_thief(d))
        elif name == "art_hopskipjump":
            _hopskipjump(victim, setup, recorder)
        else:
            raise ValueError(f"unknown ART stream {name!r}")
    return recorder.stream


def _knockoff(victim: Any, sampling: str) -> Any:
    from art.attacks.extraction import KnockoffNets

    return KnockoffNets(
        victim,
        batch_size_fit=64,
        batch_size_query=1,
        nb_epochs=1,
        nb_stolen=BUDGET,
        sampling_strategy=sampling,
        verbose=False,
    )


def _thief(d: Dataset) -> Any:
    """The attacker's copy under ART's scikit-learn wrapper: a softmax regression that
    learns incrementally (KnockoffNets fits it on each batch it queries, with fitting
    options a scikit-learn ``fit`` does not take)."""
    from art.estimators.classification.scikitlearn import ScikitlearnClassifier
    from sklearn.linear_model import SGDClassifier

    classes = np.arange(d.classes)

    class Copy(SGDClassifier):  # type: ignore[misc]
        def fit(self, x: np.ndarray, y: np.ndarray, *args: Any, **kwargs: Any) -> Copy:
            labels = y.argmax(axis=1) if y.ndim == 2 else y
            self.partial_fit(np.asarray(x, dtype=np.float64), labels, classes=classes)
            return self

    model = Copy(loss="log_loss", random_state=0)
    # ART's adaptive strategy asks the copy for scores before its first fit
    model.fit(d.x_test[: 10 * d.classes], d.y_test[: 10 * d.classes])
    return ScikitlearnClassifier(model, clip_values=(d.low, d.high))


def _other_source(d: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Labelled digits of the other data set, resized to ``d``'s square input and range."""
    from PIL import Image

    other = load("mnist" if d.name == "digits" else "digits")
    side, other_side = math.isqrt(d.features), math.isqrt(other.features)
    rows = np.empty((len(other.x_test), d.features))
    for i, row in enumerate(other.x_test):
        grey = (row.reshape(other_side, other_side) - other.low) / (other.high - other.low)
        image = Image.fromarray(np.uint8(np.round(grey * 255)))
        small = np.asarray(image.resize((side, side), Image.Resampling.BILINEAR)) / 255.0
        rows[i] = d.low + (d.high - d.low) * small.ravel()
    return rows, np.eye(d.classes)[other.y_test]


def _hopskipjump(victim: Any, setup: Setup, recorder: Recorder) -> None:
    """HopSkipJump from natural inputs (each started at a natural input of another class)
    until the stream is long enough."""
    from art.attacks.evasion import HopSkipJump

    d = setup.data
    attack = HopSkipJump(
        victim, batch_size=1, max_iter=10, max_eval=200, init_eval=20, verbose=False
    )
    labels = d.model.predict_proba(setup.reference_rows).argmax(axis=1)
    for i, x in enumerate(setup.reference_rows):
        if len(recorder.rows) >= BUDGET:
            return
        others = setup.reference_rows[labels != labels[i]]
        start = others[i % len(others)]
        attack.generate(x[None, :], x_adv_init=start[None, :])
