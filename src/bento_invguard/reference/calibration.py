"""Thresholds of the shared view, derived from reference data and a false-positive rate.

A natural query is a false positive when the view holds ``cluster_size`` or
more earlier natural queries within ``radius`` of it. Fitted once on the
reference data (fingerprints of a held-out part against the rest), the
calibration keeps, for each cluster size ``c``, the distance to the c-th
nearest neighbour that a small share of held-out rows fall below, and the
data's intrinsic dimension ``D``. For a policy's target rate ``p`` and a view
of ``N`` natural queries it then gives, per ``c``:

    radius(c) = q_c * (fit_rows / N) ** (1 / D) * (p / share) ** (1 / (c * D))

(the lower tail of the c-th neighbour distance scales as ``r ** (c * D)``, and
a view ``N / fit_rows`` times denser brings neighbours ``(N / fit_rows) ** (1/D)``
closer), and chooses the ``c`` that catches the widest steps: a chain of
probes ``s`` apart has ``radius / s`` earlier neighbours, so the largest
``radius(c) / c`` wins.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SHARE = 0.05  # quantile of the neighbour distances kept (enough held-out rows below it)
LARGEST_CLUSTER = 8
SMALLEST_CLUSTER = 2  # one neighbour alone is too common among natural inputs
ID_NEIGHBOURS = 10  # neighbours used to estimate the intrinsic dimension


class Thresholds(BaseModel):
    """What the view uses: a query is probing with ``cluster_size`` neighbours within ``radius``."""

    model_config = ConfigDict(frozen=True)

    radius: float = Field(gt=0)
    cluster_size: int = Field(ge=1)


class NeighbourCalibration(BaseModel):
    """How close natural inputs come to each other, measured on held-out reference rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fit_rows: int = Field(ge=1, description="Reference rows the held-out rows were compared with.")
    holdout_rows: int = Field(ge=1)
    dimension: float = Field(gt=0, description="Intrinsic dimension of the data near each row.")
    share: float = Field(default=SHARE, gt=0, lt=1)
    quantiles: tuple[float, ...] = Field(
        description="Per cluster size c = 1, 2, ...: the distance to the c-th nearest "
        "reference row that `share` of the held-out rows fall below (fingerprint units)."
    )
    smallest: tuple[tuple[float, ...], ...] = Field(
        default=(),
        description="Per cluster size: the smallest distances of held-out rows to their "
        "c-th nearest reference row, to check a radius against.",
    )

    @classmethod
    def fit(
        cls, fingerprints: np.ndarray, holdout: float = 0.2, seed: int = 0
    ) -> NeighbourCalibration | None:
        """From the reference rows' fingerprints; None with too few rows to hold some out."""
        n = len(fingerprints)
        held_n = round(n * holdout)
        if held_n < 20 or n - held_n < LARGEST_CLUSTER + ID_NEIGHBOURS:
            return None
        order = np.random.default_rng(seed).permutation(n)
        held = np.asarray(fingerprints[order[:held_n]], dtype=np.float64)
        rest = np.asarray(fingerprints[order[held_n:]], dtype=np.float64)
        nearest = _nearest_distances(held, rest, max(LARGEST_CLUSTER, ID_NEIGHBOURS))
        return cls(
            fit_rows=len(rest),
            holdout_rows=held_n,
            dimension=_intrinsic_dimension(nearest[:, :ID_NEIGHBOURS]),
            quantiles=tuple(
                float(np.quantile(nearest[:, c], SHARE)) for c in range(LARGEST_CLUSTER)
            ),
            smallest=tuple(
                tuple(float(d) for d in np.sort(nearest[:, c])[:20]) for c in range(LARGEST_CLUSTER)
            ),
        )

    def held_out_within(self, thresholds: Thresholds) -> int:
        """Held-out rows with ``cluster_size`` reference rows within the radius (counted
        among the smallest kept; the reference rows stand in for a full view)."""
        if len(self.smallest) < thresholds.cluster_size:
            return 0
        return sum(d <= thresholds.radius for d in self.smallest[thresholds.cluster_size - 1])

    def radius(self, cluster_size: int, target_rate: float, view_size: int) -> float:
        """The largest radius whose false-positive rate stays at ``target_rate``."""
        d = self.dimension
        denser = (self.fit_rows / max(view_size, self.fit_rows)) ** (1.0 / d)
        rarer = min(1.0, target_rate / self.share) ** (1.0 / (cluster_size * d))
        return float(self.quantiles[cluster_size - 1] * denser * rarer)

    def thresholds(self, target_rate: float, view_size: int) -> Thresholds:
        """The cluster size (and its radius) that catches the widest-stepping chains."""
        sizes = range(SMALLEST_CLUSTER, len(self.quantiles) + 1)
        best = max(sizes, key=lambda c: self.radius(c, target_rate, view_size) / c)
        radius = self.radius(best, target_rate, view_size)
        return Thresholds(radius=max(radius, 1e-12), cluster_size=best)


def _nearest_distances(rows: np.ndarray, others: np.ndarray, k: int) -> np.ndarray:
    """Each row's k smallest distances to ``others``, ascending (in blocks of rows)."""
    squared_others = (others * others).sum(axis=1)
    out = np.empty((len(rows), k))
    for start in range(0, len(rows), 256):
        block = rows[start : start + 256]
        squared = (block * block).sum(axis=1)[:, None] + squared_others - 2.0 * block @ others.T
        part = np.partition(np.maximum(squared, 0.0), k - 1, axis=1)[:, :k]
        out[start : start + len(block)] = np.sqrt(np.sort(part, axis=1))
    return out


def _intrinsic_dimension(nearest: np.ndarray) -> float:
    """Levina-Bickel maximum-likelihood estimate from each row's nearest distances."""
    usable = nearest[(nearest > 0).all(axis=1)]
    if len(usable) == 0:
        return 1.0
    k = usable.shape[1]
    logs = np.log(usable[:, -1:] / usable[:, :-1]).sum(axis=1) / (k - 1)
    logs = logs[logs > 0]
    if len(logs) == 0:
        return 1.0
    return float(min(max(1.0 / logs.mean(), 1.0), 64.0))
