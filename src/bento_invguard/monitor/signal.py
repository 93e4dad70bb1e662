"""The distribution signal's per-row path: a row's statistics, a key's running sum of
them, and its score against the calibrated limits (see ``distribution.py``).

Built once from a reference (:meth:`DistributionReference.signal`), as closures over
plain arrays, so a query touches no model attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Signal:
    """A reference's per-row path, built once: plain attributes, so a query reads no
    model attribute. From :meth:`DistributionReference.signal`."""

    statistics: Callable[[np.ndarray], np.ndarray]  # rows -> their statistics (n, size)
    score: Callable[[np.ndarray, int, np.ndarray | None], float]  # see the reference's
    decay: float
    size: int
    features: int

    def off(self, total: np.ndarray, rows: int) -> bool:
        """Whether a running sum of ``rows`` rows (a key's, or the crowd's) is past the limit."""
        return self.score(total, rows, None) > 0.0


def decayed_sum(running: np.ndarray, stats: np.ndarray, decay: float) -> np.ndarray:
    """``running`` decayed by one step per row of ``stats`` (n, size), oldest first, plus
    those rows, each decayed by the steps after it. A new sum if the sizes differ."""
    if running.shape != stats.shape[1:]:
        running = np.zeros(stats.shape[1])
    if len(stats) == 1:  # the common one-row query: no weights to build
        out: np.ndarray = running * decay + stats[0]
        return out
    weights = decay ** np.arange(len(stats) - 1, -1, -1, dtype=np.float64)
    out = running * decay ** len(stats) + weights @ stats
    return out


def row_statistics(
    mean: np.ndarray, proj: np.ndarray, residual: float, centre: np.ndarray, white: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """The per-row path, specialised once: each row's raw statistics go into one array
    with a last column of ones, and one product whitens them and subtracts the centre
    (with the log residual's scale folded in), so a row costs a few small products."""
    scale = column_scale(proj)
    m = proj.shape[1]
    # (raw - centre) @ white, with raw's log column log(off + residual) - log(residual)
    offset = (centre + np.eye(len(centre))[-1] * np.log(residual)) @ white
    whiten = np.vstack([white, -offset])

    def statistics(rows: np.ndarray) -> np.ndarray:
        centred = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1) - mean
        raw = np.ones((len(centred), 2 * m + 2))
        z, squares = raw[:, :m], raw[:, m : 2 * m]
        np.matmul(centred, proj, out=z)
        np.multiply(z, z, out=squares)
        off = np.vecdot(centred, centred) - squares @ scale
        np.log(off + residual, out=raw[:, 2 * m])
        out: np.ndarray = raw @ whiten
        return out

    return statistics


def running_score(
    decay2: float, limit: float, projected_limit: float, min_rows: int, crowd_min_rows: int
) -> Callable[[np.ndarray, int, np.ndarray | None], float]:
    first = min(min_rows, crowd_min_rows)

    def score(total: np.ndarray, rows: int, direction: np.ndarray | None) -> float:
        if rows < first:
            return 0.0
        weight2 = (1.0 - decay2**rows) / (1.0 - decay2)  # the sum of squared weights
        ratio = float(total @ total) / weight2 / limit if rows >= min_rows else 0.0
        if direction is not None and rows >= crowd_min_rows:
            along = float(total @ direction)
            ratio = max(ratio, along * along / weight2 / projected_limit)
        if ratio < 1.0:
            return 0.0
        return min(1.0, 0.5 + 0.5 * (ratio - 1.0))

    return score


def column_scale(proj: np.ndarray) -> np.ndarray:
    """Squared length of each whitened direction: |c . u|^2 = z^2 * scale."""
    scale: np.ndarray = 1.0 / (proj * proj).sum(axis=0)
    return scale
