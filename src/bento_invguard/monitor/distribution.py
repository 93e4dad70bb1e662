"""Is a key's traffic distributed like natural data? A running test per key.

Extraction attacks that cannot buy natural data query with synthetic points
(uniform draws, blends of a few natural inputs, Jacobian augmentation) or with
natural inputs of another domain. One at a time such rows may pass the
reference profile; together their shape gives them away: blends shrink the
spread along the data's principal directions, augmented points stray across
them, another domain moves the mean.

Each row becomes a few statistics on the reference profile's subspace: its
whitened coordinates on the first components, their squares, and the log of
its residual off the subspace. These are standardised on held-out natural
rows (mean 0, identity covariance). A key keeps an exponentially decayed sum
``S`` of its rows' statistics and the decayed sum of squared weights ``W2``;
``T = |S|^2 / W2`` is then about chi-square for natural traffic, and large
when the traffic is off. The limit on ``T`` is calibrated on streams of
held-out rows to the policy's false-positive rate (the tail of those streams'
statistics, as the profile's distance limit is), so that a natural key crosses
it at most at that rate in any ``half_life`` rows. Per row: a few small
products and one decayed add, no test over the window.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ..reference.tail import DistanceTail
from .signal import Signal, row_statistics, running_score

if TYPE_CHECKING:
    from ..reference import Profile

FORMAT = "bento_invguard.distribution/2"
COMPONENTS = 8  # principal directions whose coordinates (and squares) are tracked
STREAMS = 400  # held-out streams simulated to calibrate the limit
STREAM_ROWS = 1000  # past 8 half-lives: a long-lived key's statistic is stationary


class DistributionReference(BaseModel):
    """What natural traffic looks like to the running test, and its calibrated limit.

    Fit with :meth:`fit` on a profile and held-out natural rows; stored as JSON.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = FORMAT
    mean: tuple[float, ...] = Field(description="The profile's mean row.")
    projection: tuple[tuple[float, ...], ...] = Field(
        description="Whitened principal directions (features x components)."
    )
    residual_variance: float = Field(gt=0)
    feature_mean: tuple[float, ...] = Field(description="Mean of the row statistics.")
    whitening: tuple[tuple[float, ...], ...] = Field(
        description="Inverse square root of the row statistics' covariance."
    )
    half_life: float = Field(gt=0, description="Rows after which a row weighs half.")
    min_rows: int = Field(ge=1, description="Rows a key sends before the test counts.")
    tail: DistanceTail = Field(description="Tail of the statistic on held-out streams.")
    limit: float = Field(gt=0, description="The statistic's limit for the target rate.")
    crowd_min_rows: int = Field(
        ge=1, description="Rows a key sends before the crowd's direction can flag it."
    )
    projected_tail: DistanceTail = Field(
        description="Tail, on held-out streams, of the statistic along one direction."
    )
    projected_limit: float = Field(gt=0, description="Its limit for the target rate.")

    _signal: Signal = PrivateAttr()

    def model_post_init(self, context: object, /) -> None:
        # built once: the per-row path then touches no pydantic attribute
        proj = np.asarray(self.projection, dtype=np.float64)
        self._signal = Signal(
            statistics=row_statistics(
                np.asarray(self.mean, dtype=np.float64),
                proj,
                self.residual_variance * (len(self.mean) - proj.shape[1]),
                np.asarray(self.feature_mean, dtype=np.float64),
                np.asarray(self.whitening, dtype=np.float64),
            ),
            score=running_score(
                self.decay**2, self.limit, self.projected_limit, self.min_rows, self.crowd_min_rows
            ),
            decay=self.decay,
            size=self.size,
            features=len(self.mean),
        )

    def signal(self) -> Signal:
        """The per-row path the monitor runs."""
        return self._signal

    @property
    def size(self) -> int:
        """Statistics per row (the length of a key's running sum)."""
        return len(self.feature_mean)

    @property
    def decay(self) -> float:
        """Weight of a row relative to the next one."""
        return float(0.5 ** (1.0 / self.half_life))

    def statistics(self, rows: np.ndarray) -> np.ndarray:
        """Each row's standardised statistics, (n, size)."""
        return self._signal.statistics(rows)

    def score(self, total: np.ndarray, rows: int, direction: np.ndarray | None = None) -> float:
        """0..1 from a key's running sum of ``rows`` rows: 0 below the limit, 0.5 (flag)
        at it, 1 at 1.5 times it. With the crowd's ``direction`` (a unit vector, given
        while all keys' traffic together is off), also the key's sum along it against
        the projected limit: many keys of a few rows each, all off the same way."""
        return self._signal.score(total, rows, direction)

    def calibrated(self, target_false_positive_rate: float) -> DistributionReference:
        """This reference with its limit set for another false-positive rate."""
        rate, half_life = target_false_positive_rate, self.half_life
        return self.model_copy(
            update={
                "limit": _limit(self.tail, rate, half_life),
                "projected_limit": _limit(self.projected_tail, rate, half_life),
            }
        )

    @classmethod
    def fit(
        cls,
        profile: Profile,
        held_out: np.ndarray,
        *,
        target_false_positive_rate: float = 1e-4,
        half_life: float = 100.0,
        min_rows: int = 50,
        crowd_min_rows: int = 10,
        seed: int = 0,
    ) -> DistributionReference:
        """From ``profile`` (its subspace) and natural rows it was not fitted on.

        Half of ``held_out`` sets the statistics' mean and covariance; streams drawn
        from the other half give the tail of ``T`` that sets the limit. A stream thus
        repeats rows of a finite pool, as a benign caller's own data does; the limit
        holds the named rate for callers whose data is at least that varied.
        """
        if profile.components is None or profile.component_variances is None:
            raise ValueError("the profile has no subspace: fit it with distance=True")
        if profile.residual_variance is None:
            raise ValueError("the profile has no residual variance")
        x = np.asarray(held_out, dtype=np.float64).reshape(len(held_out), -1)
        if len(x) < 40:
            raise ValueError("need at least 40 held-out rows")
        m = min(COMPONENTS, len(profile.components))
        comps = np.asarray(profile.components, dtype=np.float64)[:m]
        proj = (comps / np.sqrt(np.asarray(profile.component_variances[:m]))[:, None]).T
        mean = np.asarray(profile.mean, dtype=np.float64)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(x))
        first, second = x[order[: len(x) // 2]], x[order[len(x) // 2 :]]
        residual = float(profile.residual_variance)
        expected = residual * (x.shape[1] - m)
        size = 2 * m + 1
        # the per-row path itself, first unstandardised (centre 0, whitening 1)
        raw = row_statistics(mean, proj, expected, np.zeros(size), np.eye(size))(first)
        centre = raw.mean(axis=0)
        cov = np.cov(raw, rowvar=False) + 1e-9 * np.eye(raw.shape[1])
        values, vectors = np.linalg.eigh(cov)
        white = vectors / np.sqrt(np.maximum(values, 1e-12)) @ vectors.T
        stats = row_statistics(mean, proj, expected, centre, white)(second)
        decay = 0.5 ** (1.0 / half_life)
        full, projected = _stream_statistics(stats, decay, min_rows, crowd_min_rows, rng)
        tail = DistanceTail.fit(full, share=0.05)
        projected_tail = DistanceTail.fit(projected, share=0.05)
        if tail is None or projected_tail is None:
            raise ValueError("too few held-out rows to calibrate the limit")
        return cls(
            mean=tuple(mean.tolist()),
            projection=tuple(tuple(r) for r in proj.tolist()),
            residual_variance=residual,
            feature_mean=tuple(centre.tolist()),
            whitening=tuple(tuple(r) for r in white.tolist()),
            half_life=half_life,
            min_rows=min_rows,
            tail=tail,
            limit=_limit(tail, target_false_positive_rate, half_life),
            crowd_min_rows=crowd_min_rows,
            projected_tail=projected_tail,
            projected_limit=_limit(projected_tail, target_false_positive_rate, half_life),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.write_text(self.model_dump_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DistributionReference:
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def _limit(tail: DistanceTail, rate: float, half_life: float) -> float:
    """The limit that a natural key crosses at ``rate`` per ``half_life`` rows: over that
    many rows its statistic changes little, so ``rate / half_life`` per row bounds it."""
    return tail.limit(rate / half_life)


def _stream_statistics(
    stats: np.ndarray,
    decay: float,
    min_rows: int,
    crowd_min_rows: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``T`` after each row past ``min_rows`` of streams drawn from natural rows, and the
    statistic along one random direction per stream after each row past ``crowd_min_rows``
    (a natural key's sum along the crowd's direction, which its few rows hardly set)."""
    # each stream repeats its own pool (a bootstrap sample of the rows), so the limit
    # covers how far a caller's own data may sit from the centre
    pools = rng.integers(0, len(stats), size=(STREAMS, len(stats)))
    picks = rng.integers(0, len(stats), size=(STREAMS, STREAM_ROWS))
    draws = stats[np.take_along_axis(pools, picks, axis=1)]
    directions = rng.standard_normal((STREAMS, stats.shape[1]))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    total = np.zeros((STREAMS, stats.shape[1]))
    weight2 = 0.0
    full, projected = [], []
    for i in range(STREAM_ROWS):
        total = total * decay + draws[:, i]
        weight2 = weight2 * decay * decay + 1.0
        if i + 1 >= min_rows:
            full.append((total * total).sum(axis=1) / weight2)
        if i + 1 >= crowd_min_rows:
            projected.append(np.einsum("ij,ij->i", total, directions) ** 2 / weight2)
    return np.concatenate(full), np.concatenate(projected)
