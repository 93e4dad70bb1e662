"""The query streams an extraction attacker sends, :data:`BUDGET` rows each.

- ``uniform``: draws over the input box;
- ``blend2``, ``blend3``: convex mixes of 2 or 3 natural inputs (Dirichlet weights);
- ``jacobian``: Jacobian augmentation (Papernot et al. 2017): from natural seeds, 1 to 4
  steps of ``0.1 x range`` along the sign of the served model's gradient;
- ``out_of_domain``: natural images of another domain (grey crops of scikit-learn's
  sample photographs, as ``invguard attack``'s ``knockoff`` strategy makes them).
"""

from __future__ import annotations

import numpy as np

from bento_invguard.redteam.common import InputSpace
from bento_invguard.redteam.strategies import knockoff_rows

from .datasets import Dataset

KINDS = ("uniform", "blend2", "blend3", "jacobian", "out_of_domain")
BUDGET = 500


def stream(kind: str, data: Dataset, natural: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, span = BUDGET, data.high - data.low
    if kind == "uniform":
        return rng.uniform(data.low, data.high, (n, data.features))
    if kind.startswith("blend"):
        k = int(kind[-1])
        weights = rng.dirichlet(np.ones(k), n)
        mixed: np.ndarray = (
            natural[rng.integers(0, len(natural), (n, k))] * weights[:, :, None]
        ).sum(1)
        return mixed
    if kind == "jacobian":  # rounds 1..4 of augmentation, as the substitute's set grows
        points = natural[rng.integers(0, len(natural), n)]
        rounds = rng.integers(1, 5, n)
        coef = data.model.coef / data.model.scale
        for r in range(1, 5):
            probs = data.model.predict_proba(points)
            label = probs.argmax(axis=1)
            gradient = coef[label] - probs @ coef  # d log p(label) / dx of the softmax model
            step = np.where((rounds >= r)[:, None], 0.1 * span * np.sign(gradient), 0.0)
            points = np.clip(points + step, data.low, data.high)
        return points
    if kind == "out_of_domain":
        space = InputSpace.from_range(data.features, data.low, data.high)
        return knockoff_rows(space, n, rng, low=data.low, high=data.high)
    raise ValueError(f"unknown stream {kind!r}")
