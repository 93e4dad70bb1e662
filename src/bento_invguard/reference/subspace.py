"""The fitting behind a reference profile: bounds, folds, and the data's subspace."""

from __future__ import annotations

import numpy as np


def bounds(
    flat: np.ndarray, quantiles: tuple[float, float], margin: float
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.quantile(flat, quantiles[0], axis=0)
    hi = np.quantile(flat, quantiles[1], axis=0)
    spread = hi - lo
    fallback = float(spread.max()) if spread.size else 0.0
    widen = margin * np.where(spread > 0, spread, fallback)
    return lo - widen, hi + widen


def folds(n: int, holdout: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(held, rest) index pairs: every row held out once, ``holdout`` of the rows at a time."""
    n_holdout = round(n * holdout)
    if not 0.0 < holdout < 1.0 or n_holdout < 1 or n_holdout >= n:
        return []
    k = min(n, max(2, round(1.0 / holdout)))
    order = np.random.default_rng(seed).permutation(n)
    held = [order[i::k] for i in range(k)]  # k <= n: none is empty
    return [(h, np.setdiff1d(order, h)) for h in held]


def fit_max_outside(
    flat: np.ndarray,
    quantiles: tuple[float, float],
    margin: float,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> int:
    most = 0
    for held, rest in folds:
        lo, hi = bounds(flat[rest], quantiles, margin)
        most = max(most, int(((flat[held] < lo) | (flat[held] > hi)).sum(axis=1).max()))
    return most


class Subspace:
    """A low-rank Gaussian model of the rows (probabilistic PCA): the distance of a row.

    ``d^2 = sum_j z_j^2 / var_j + |residual|^2 / residual_var`` with ``z`` the
    row's coordinates on the principal components: how many standard
    deviations the row lies from the data, in the directions the data varies
    in and out of them.
    """

    def __init__(
        self, mean: np.ndarray, components: np.ndarray, variances: np.ndarray, residual: float
    ) -> None:
        self.mean = mean
        self.components = components
        self.variances = variances
        self.residual = residual
        # d^2 = |c|^2 / residual - sum_j z_j^2 (1 / residual - 1 / var_j)
        # (var_j >= residual: the components carry the most variance)
        less = np.maximum(1.0 / residual - 1.0 / variances, 0.0)
        weights = components * np.sqrt(less)[:, None]  # (k, features)
        self._weights = np.ascontiguousarray(weights.T)
        self._inv_residual = 1.0 / residual

    @classmethod
    def fit(cls, flat: np.ndarray, components: int | None, explained: float) -> Subspace | None:
        n, features = flat.shape
        most = min(n - 1, features - 1)
        if most < 1:
            return None
        mean = flat.mean(axis=0)
        _, sv, vt = np.linalg.svd(flat - mean, full_matrices=False)
        var = sv**2 / (n - 1)
        if var.sum() <= 0:
            return None
        if components is None:
            share = np.cumsum(var) / var.sum()
            components = int(np.searchsorted(share, explained)) + 1
        k = max(1, min(components, most))
        floor = 1e-3 * var[0]  # directions the data never varies in still get a scale
        residual = max(float(var[k:features].sum() / (features - k)), floor)
        return cls(mean, vt[:k], np.maximum(var[:k], floor), residual)

    def squared(self, flat: np.ndarray) -> np.ndarray:
        """Squared distance of each row (components are orthonormal, so the residual's
        squared norm is the centred row's minus its projection's)."""
        centred = flat - self.mean
        z = centred @ self._weights
        squared: np.ndarray = (centred * centred).sum(axis=1) * self._inv_residual
        squared -= (z * z).sum(axis=1)
        return squared  # may dip a rounding error below 0

    def distances(self, flat: np.ndarray) -> np.ndarray:
        """Each row's distance (the square root of :meth:`squared`, rounding errors cut at 0)."""
        distance: np.ndarray = np.sqrt(np.maximum(self.squared(flat), 0.0))
        return distance


def held_out_distances(
    flat: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    components: int | None,
    explained: float,
) -> np.ndarray | None:
    """Each row's distance to a subspace fitted without it (every row held out once)."""
    out = np.empty(len(flat))
    for held, rest in folds:
        sub = Subspace.fit(flat[rest], components, explained)
        if sub is None:
            return None
        out[held] = sub.distances(flat[held])
    return out
