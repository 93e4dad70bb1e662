"""The project's own inversion attacks, run through a :class:`~support.ways.Stream`.

- ``nes``: NES inversion from full scores (``support/attacks.py``,
  trusted tier), one target class per stream, from a ``blank`` (all-zero)
  input or from a ``natural`` held-out input of another class;
- ``revcorr``: label-only reverse correlation (public tier; the algorithm of
  ``bento_invguard.redteam.label_only`` on the stream's interface): random
  probes around the mean held-out input; the mean probe answered ``c`` is the
  picture of class ``c``, for every class at once.

Reconstructions are scored by the data set's judge (trained on held-out data,
never queried): success is the share the judge recognises as their target.
"""

from __future__ import annotations

import numpy as np

from .attacks import Refused, nes_inversion
from .datasets import Dataset
from .ways import Stream

INVERSION = ("nes", "revcorr")
TIER = {"nes": "trusted", "revcorr": "public"}
STARTS = {"nes": ("blank", "natural"), "revcorr": ("mean",)}


def nes_targets(d: Dataset, n: int) -> list[int]:
    """``n`` target classes, spread over the classes."""
    return [(3 * t + 1) % d.classes for t in range(n)]


def run_nes(target: int, start: str, d: Dataset, stream: Stream, seed: int) -> dict[str, object]:
    """NES towards ``target``; the judge's verdict on the final guess."""
    scale = (d.high - d.low) / 16.0  # the digits' settings, in this data set's units
    other = (target + 5) % d.classes
    x0 = np.zeros(d.features) if start == "blank" else d.first_of(other, nth=1)
    run = nes_inversion(
        stream,
        stream.budget,
        target=target,
        start=x0,
        lower=np.full(d.features, d.low),
        upper=np.full(d.features, d.high),
        sigma=0.5 * scale,
        pairs=10,
        step=8.0 * scale,
        seed=seed,
        batch=20,
    )
    stream.ledger.stopped = run.stopped
    guess = np.asarray(run.output["guess"])[np.newaxis]
    judged = int(d.judge.predict(guess)[0])
    return {"targets": [target], "recognised": [judged == target]}


def run_revcorr(d: Dataset, stream: Stream, seed: int, batch: int = 20) -> dict[str, object]:
    """Reverse correlation until the budget or a refusal; the judge's verdict per class."""
    rng = np.random.default_rng(seed)
    start = d.x_test.mean(axis=0)
    spread = d.x_test.std(axis=0)
    sums = np.zeros((d.classes, d.features))
    counts = np.zeros(d.classes)
    try:
        while True:
            probes = np.clip(
                start + 2.0 * spread * rng.standard_normal((batch, d.features)), d.low, d.high
            )
            answers = stream(probes)
            for label, row in zip(answers.argmax(axis=1), probes, strict=True):
                sums[label] += row
                counts[label] += 1
    except Refused as refusal:
        stream.ledger.stopped = str(refusal) or "refused"
    pictures = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], start)
    judged = d.judge.predict(pictures)
    targets = list(range(d.classes))
    recognised = [bool(j == t) for j, t in zip(judged, targets, strict=True)]
    return {"targets": targets, "recognised": recognised}
