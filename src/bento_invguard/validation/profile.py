"""A reference profile of the training data: per-feature bounds, mean, spread, subspace.

Inversion and extraction attacks start from noise or synthetic inputs that no
real caller would send; a profile fitted on the training data turns those away.
Two checks: per-feature bounds (a pixel no real row ever lights), and the
distance of a row to the data (a row whose pixels are each plausible but
whose pattern no real row shows, like the random probes of reverse
correlation). Profiles are stored as JSON beside the policy (never pickle).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..errors import PolicyError
from ..view.calibration import NeighbourCalibration
from ..view.sketch import Sketch

FORMAT = "bento_invguard.profile/1"
QUADRATIC_FORM_MAX_FEATURES = 512  # above, the distance uses the low-rank form (less memory)


def _bounds(
    flat: np.ndarray, quantiles: tuple[float, float], margin: float
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.quantile(flat, quantiles[0], axis=0)
    hi = np.quantile(flat, quantiles[1], axis=0)
    spread = hi - lo
    fallback = float(spread.max()) if spread.size else 0.0
    widen = margin * np.where(spread > 0, spread, fallback)
    return lo - widen, hi + widen


def _folds(n: int, holdout: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(held, rest) index pairs: every row held out once, ``holdout`` of the rows at a time."""
    n_holdout = round(n * holdout)
    if not 0.0 < holdout < 1.0 or n_holdout < 1 or n_holdout >= n:
        return []
    k = min(n, max(2, round(1.0 / holdout)))
    order = np.random.default_rng(seed).permutation(n)
    held = [order[i::k] for i in range(k)]  # k <= n: none is empty
    return [(h, np.setdiff1d(order, h)) for h in held]


def _fit_max_outside(
    flat: np.ndarray,
    quantiles: tuple[float, float],
    margin: float,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> int:
    most = 0
    for held, rest in folds:
        lo, hi = _bounds(flat[rest], quantiles, margin)
        most = max(most, int(((flat[held] < lo) | (flat[held] > hi)).sum(axis=1).max()))
    return most


class _Subspace:
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
        self._form: np.ndarray | None = None
        features = components.shape[1]
        if features <= QUADRATIC_FORM_MAX_FEATURES:
            # one (features x features) product per row: fewer NumPy calls for small rows
            self._form = np.eye(features) * self._inv_residual - weights.T @ weights

    @classmethod
    def fit(cls, flat: np.ndarray, components: int | None, explained: float) -> _Subspace | None:
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
        if self._form is not None:
            squared: np.ndarray = ((centred @ self._form) * centred).sum(axis=1)
        else:
            z = centred @ self._weights
            squared = (centred * centred).sum(axis=1) * self._inv_residual
            squared -= (z * z).sum(axis=1)
        return squared  # may dip a rounding error below 0


def _held_out_distances(
    flat: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    components: int | None,
    explained: float,
) -> np.ndarray | None:
    """Each row's distance to a subspace fitted without it (every row held out once)."""
    out = np.empty(len(flat))
    for held, rest in folds:
        sub = _Subspace.fit(flat[rest], components, explained)
        if sub is None:
            return None
        out[held] = np.sqrt(np.maximum(sub.squared(flat[held]), 0.0))
    return out


class DistanceTail(BaseModel):
    """The upper tail of held-out rows' distances to the data, as an exponential beyond
    ``threshold``: a share ``share`` of natural rows lies past it, and past that the share
    falls by e for each ``scale``. Gives the limit for any false-positive rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(ge=0)
    scale: float = Field(gt=0)
    share: float = Field(gt=0, lt=1)
    rows: int = Field(ge=1, description="Held-out rows the tail was measured on.")
    largest: tuple[float, ...] = Field(
        default=(), description="The largest held-out distances, to check a limit against."
    )

    @classmethod
    def fit(cls, distances: np.ndarray, share: float = 0.1) -> DistanceTail | None:
        threshold = float(np.quantile(distances, 1.0 - share))
        excess = distances[distances > threshold] - threshold
        if len(excess) < 5 or not excess.mean() > 0:
            return None
        largest = tuple(float(d) for d in np.sort(distances)[::-1][:20])
        return cls(
            threshold=threshold,
            scale=float(excess.mean()),
            share=share,
            rows=len(distances),
            largest=largest,
        )

    def held_out_above(self, limit: float) -> int:
        """Held-out rows farther than ``limit`` (counted among the largest kept)."""
        return sum(d > limit for d in self.largest)

    def limit(self, rate: float) -> float:
        """The distance that natural rows exceed at ``rate``."""
        return self.threshold + self.scale * max(0.0, float(np.log(self.share / rate)))


class Calibration(BaseModel):
    """What the profile measured on held-out reference rows, for a target false-positive rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    distance: DistanceTail | None = None
    neighbours: NeighbourCalibration | None = None


class Violation(BaseModel):
    """Why a row was refused: a feature outside its bounds, or the row far from the data."""

    row: int
    kind: Literal["bounds", "distance"] = "bounds"
    feature: int = -1
    value: float = 0.0
    lower: float = 0.0
    upper: float = 0.0

    @property
    def detail(self) -> str:
        """The reason in words; a distance refusal gives no figures (they would map the data)."""
        if self.kind == "distance":
            return f"row {self.row} is far from the reference data"
        return (
            f"feature {self.feature} of row {self.row} is {self.value:g}, outside the "
            f"reference profile [{self.lower:g}, {self.upper:g}]"
        )


class ProfileCheck:
    """A profile's checks, in plain attributes for the request path.

    (A pydantic model's private attributes are read through ``__getattr__``,
    which cost more than the comparisons themselves.)
    """

    __slots__ = ("hi", "limit2", "lo", "max_outside", "subspace")

    def __init__(
        self,
        lo: np.ndarray,
        hi: np.ndarray,
        max_outside: int,
        subspace: _Subspace | None,
        limit2: float,
    ) -> None:
        self.lo, self.hi, self.max_outside = lo, hi, max_outside
        self.subspace, self.limit2 = subspace, limit2

    def first_violation(self, rows: np.ndarray) -> Violation | None:
        """The first row with more than ``max_outside`` features outside the bounds,
        or (if none) the first row farther from the data than the distance limit."""
        lo, hi = self.lo, self.hi
        flat = np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1)
        outside = (flat < lo) | (flat > hi)
        if outside.any():
            too_many = outside.sum(axis=1) > self.max_outside
            if too_many.any():
                row = int(np.argmax(too_many))
                feature = int(np.argmax(outside[row]))
                return Violation(
                    row=row,
                    feature=feature,
                    value=float(flat[row, feature]),
                    lower=float(lo[feature]),
                    upper=float(hi[feature]),
                )
        if self.subspace is not None:
            far = self.subspace.squared(flat) > self.limit2
            if far.any():
                return Violation(row=int(np.argmax(far)), kind="distance")
        return None

    def fast_accept(
        self, low: float | None = None, high: float | None = None
    ) -> Callable[[np.ndarray], bool] | None:
        """A cheaper test that only ever says yes when the exact checks would pass.

        ``accept(rows)`` is True when every value lies within the profile's bounds
        narrowed to ``[low, high]`` (so it is finite and in the policy's range
        too) and every row lies clearly inside the distance limit: 7 NumPy calls
        for one row, instead of the 15 that the policy's range check and
        :meth:`first_violation` make. False means "not sure": the exact checks
        then decide, and name the offending value. Rows so close to the distance
        limit that the two ways of summing could disagree (a relative margin of
        at least 1e-9) go to the exact checks. None when the profile has no
        quadratic form to use (very wide rows).
        """
        sub = self.subspace
        if sub is None or sub._form is None:
            return None
        lo = self.lo if low is None else np.maximum(self.lo, low)
        hi = self.hi if high is None else np.minimum(self.hi, high)
        mean, form = sub.mean, sub._form
        # Summed in another order, the distance may differ from the exact path's by
        # about features * eps * kappa of it (kappa: the form's condition number,
        # at most 1e3 for a fitted profile); rows that close to the limit go exact.
        variances = np.append(sub.variances, sub.residual)
        kappa = float(variances.max() / variances.min())
        margin = 1e-9 + 4 * form.shape[0] * float(np.finfo(np.float64).eps) * kappa
        if not margin < 0.5:
            return None
        limit2 = self.limit2 * (1.0 - margin)

        features = lo.size

        def accept(rows: np.ndarray) -> bool:
            # np.count_nonzero and ndarray.dot: the cheapest NumPy calls for these steps.
            if rows.shape[0] == 1:  # one row: 1-D operands, no broadcasting
                row = rows.reshape(-1)
                if np.count_nonzero((row >= lo) & (row <= hi)) != features:
                    return False
                centred = row - mean
                return bool(centred.dot(form.dot(centred)) <= limit2)
            flat = rows.reshape(rows.shape[0], -1)
            if np.count_nonzero((flat >= lo) & (flat <= hi)) != flat.size:
                return False
            centred = flat - mean
            squared = ((centred @ form) * centred).sum(axis=1)
            return bool(np.count_nonzero(squared <= limit2) == flat.shape[0])

        return accept


class Profile(BaseModel):
    """Per-feature bounds and a distance to the data, fitted on training data.

    >>> import numpy as np
    >>> profile = Profile.fit(np.array([[0.0, 1.0], [2.0, 3.0]]), margin=0.0)
    >>> profile.first_violation(np.array([[1.0, 2.0]])) is None
    True
    >>> profile.first_violation(np.array([[1.0, 9.0]])).feature
    1
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = FORMAT
    feature_shape: tuple[int, ...]
    n_samples: int = Field(ge=1)
    lower: tuple[float, ...] = Field(description="Lowest accepted value per feature.")
    upper: tuple[float, ...] = Field(description="Highest accepted value per feature.")
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_outside: int = Field(
        default=0, ge=0, description="Features a row may have outside the bounds and pass."
    )
    components: tuple[tuple[float, ...], ...] | None = Field(
        default=None,
        description="Principal directions of the data (orthonormal rows); None: no distance check.",
    )
    component_variances: tuple[float, ...] | None = Field(
        default=None, description="Variance of the data along each component."
    )
    residual_variance: float | None = Field(
        default=None, gt=0, description="Variance per feature outside the components."
    )
    distance_limit: float | None = Field(
        default=None,
        gt=0,
        description="Largest accepted distance of a row to the data (standard deviations).",
    )
    calibration: Calibration | None = Field(
        default=None,
        description="Held-out measurements that set the distance limit and the shared view's "
        "radius for a false-positive rate (see calibrated()).",
    )

    _lo: np.ndarray = PrivateAttr()
    _hi: np.ndarray = PrivateAttr()
    _subspace: _Subspace | None = PrivateAttr(default=None)
    _limit2: float = PrivateAttr(default=np.inf)
    _check: ProfileCheck = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        # Arrays built once, so a check costs two vector comparisons and two products.
        self._lo = np.asarray(self.lower, dtype=np.float64)
        self._hi = np.asarray(self.upper, dtype=np.float64)
        if (
            self.distance_limit is not None
            and self.components is not None
            and self.component_variances is not None
            and self.residual_variance is not None
        ):  # the validator makes these all set or all None
            self._subspace = _Subspace(
                np.asarray(self.mean, dtype=np.float64),
                np.asarray(self.components, dtype=np.float64),
                np.asarray(self.component_variances, dtype=np.float64),
                self.residual_variance,
            )
            self._limit2 = self.distance_limit**2
        self._check = ProfileCheck(
            self._lo, self._hi, self.max_outside, self._subspace, self._limit2
        )

    @property
    def check(self) -> ProfileCheck:
        """The checks as a plain object: what the input validator calls per request."""
        return self._check

    def __eq__(self, other: object) -> bool:
        # The cached arrays are derived data; compare the fields only.
        if not isinstance(other, Profile):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = BaseModel.__hash__

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        n = int(np.prod(self.feature_shape))
        for name in ("lower", "upper", "mean", "std"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: expected {n} values for shape {self.feature_shape}")
        if any(lo > hi for lo, hi in zip(self.lower, self.upper, strict=True)):
            raise ValueError("lower: a lower bound is above its upper bound")
        distance = (
            self.components,
            self.component_variances,
            self.residual_variance,
            self.distance_limit,
        )
        if any(v is None for v in distance) and any(v is not None for v in distance):
            raise ValueError(
                "components, component_variances, residual_variance and distance_limit "
                "go together: give all four or none"
            )
        if self.components is not None and self.component_variances is not None:
            if not self.components or any(len(c) != n for c in self.components):
                raise ValueError(f"components: expected rows of {n} values")
            if len(self.component_variances) != len(self.components):
                raise ValueError("component_variances: expected one per component")
            if any(not v > 0 for v in self.component_variances):
                raise ValueError("component_variances: every variance must be > 0")
        return self

    @classmethod
    def fit(
        cls,
        data: Any,
        *,
        quantiles: tuple[float, float] = (0.0, 1.0),
        margin: float = 0.05,
        max_outside: int | None = None,
        holdout: float = 0.2,
        seed: int = 0,
        distance: bool = True,
        n_components: int | None = None,
        explained: float = 0.9,
        target_false_positive_rate: float = 5e-5,
    ) -> Profile:
        """Fit bounds and a distance check on ``data`` of shape ``(n_samples, *feature_shape)``.

        Bounds are the given quantiles of each feature, widened by ``margin``
        times the feature's spread (the widest spread, for constant features).
        ``max_outside`` (how many features of a row may fall outside and still
        pass) is, unless given, the most that any row shows when the data is
        split in folds of ``holdout`` (each row held out once) and each fold
        is checked against bounds fitted on the others: real rows from the
        same distribution pass, noise and synthetic probes do not.

        The distance check (``distance=True``) fits a probabilistic PCA of the
        rows: ``n_components`` principal directions (by default as many as
        explain ``explained`` of the variance) and one variance for the rest.
        A row's distance counts the standard deviations it lies from the data,
        along and across those directions; the limit is where the tail of the
        held-out rows' distances (each row held out once, in the same folds)
        falls to ``target_false_positive_rate``. The calibration kept with the
        profile also says how near natural rows come to each other (for the
        shared view), so :meth:`calibrated` can set both for another rate.
        It refuses rows whose every feature is plausible but whose pattern
        no real row shows (random probes around the mean, for instance).
        Needs at least 10 rows and 2 features, and a holdout; otherwise it is off.
        """
        x = np.asarray(data, dtype=np.float64)
        if x.ndim < 2 or x.shape[0] < 1:
            raise ValueError("data must have shape (n_samples, *feature_shape) with n_samples >= 1")
        if not np.isfinite(x).all():
            raise ValueError("data contains NaN or infinite values")
        if not 0.0 <= quantiles[0] < quantiles[1] <= 1.0:
            raise ValueError("quantiles must satisfy 0 <= low < high <= 1")
        if margin < 0:
            raise ValueError("margin must be >= 0")
        if not 0.0 < target_false_positive_rate < 0.5:
            raise ValueError("target_false_positive_rate must satisfy 0 < rate < 0.5")
        if not 0.0 < explained <= 1.0:
            raise ValueError("explained must satisfy 0 < explained <= 1")
        if n_components is not None and n_components < 1:
            raise ValueError("n_components must be >= 1")
        flat = x.reshape(x.shape[0], -1)
        folds = _folds(flat.shape[0], holdout, seed)
        if max_outside is None:
            max_outside = _fit_max_outside(flat, quantiles, margin, folds)
        lo, hi = _bounds(flat, quantiles, margin)
        fields: dict[str, Any] = {}
        tail = None
        if distance and folds and flat.shape[0] >= 10 and flat.shape[1] >= 2:
            held_out = _held_out_distances(flat, folds, n_components, explained)
            tail = DistanceTail.fit(held_out) if held_out is not None else None
            sub = _Subspace.fit(flat, n_components, explained)
            if tail is not None and sub is not None:
                fields = {
                    "components": tuple(tuple(float(v) for v in c) for c in sub.components),
                    "component_variances": tuple(float(v) for v in sub.variances),
                    "residual_variance": float(sub.residual),
                    "distance_limit": tail.limit(target_false_positive_rate),
                }
        mean = flat.mean(axis=0)
        neighbours = NeighbourCalibration.fit(Sketch(flat.shape[1], mean)(flat), holdout, seed)
        if tail is not None or neighbours is not None:
            fields["calibration"] = Calibration(distance=tail, neighbours=neighbours)
        return cls(
            feature_shape=tuple(int(d) for d in x.shape[1:]),
            n_samples=int(x.shape[0]),
            lower=tuple(float(v) for v in lo),
            upper=tuple(float(v) for v in hi),
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in flat.std(axis=0)),
            max_outside=max_outside,
            **fields,
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.write_text(self.model_dump_json(indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Profile:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolicyError(f"profile {path}: file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise PolicyError(f"profile {path}: cannot read: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            from ..policy.loading import format_validation_error

            raise PolicyError(format_validation_error(exc, f"profile {path}")) from None

    def calibrated(self, target_false_positive_rate: float) -> Profile:
        """This profile with its distance limit set for ``target_false_positive_rate``
        (unchanged without a calibration)."""
        tail = self.calibration.distance if self.calibration is not None else None
        if tail is None or self.distance_limit is None:
            return self
        limit = tail.limit(target_false_positive_rate)
        return type(self).model_validate({**self.model_dump(), "distance_limit": limit})

    @property
    def checks_distance(self) -> bool:
        """True when the profile refuses rows far from the data, not only out of bounds."""
        return self._subspace is not None

    def distances(self, rows: np.ndarray) -> np.ndarray:
        """Each row's distance to the data (0 for every row without a distance check)."""
        flat = np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1)
        if self._subspace is None:
            return np.zeros(flat.shape[0])
        distance: np.ndarray = np.sqrt(np.maximum(self._subspace.squared(flat), 0.0))
        return distance

    def outliers(self, rows: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows the profile refuses (either check)."""
        flat = np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1)
        outside = ((flat < self._lo) | (flat > self._hi)).sum(axis=1) > self.max_outside
        if self._subspace is not None:
            outside |= self._subspace.squared(flat) > self._limit2
        mask: np.ndarray = outside
        return mask

    def first_violation(self, rows: np.ndarray) -> Violation | None:
        """The first row with more than ``max_outside`` features outside the bounds,
        or (if none) the first row farther from the data than ``distance_limit``."""
        return self._check.first_violation(rows)
