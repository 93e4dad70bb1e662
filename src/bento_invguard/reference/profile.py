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
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..errors import PolicyError
from .calibration import NeighbourCalibration
from .profile_check import ProfileCheck, Violation
from .sketch import Sketch
from .subspace import Subspace, bounds, fit_max_outside, held_out_distances
from .subspace import folds as make_folds
from .tail import Calibration, DistanceTail

FORMAT = "bento_invguard.profile/1"

__all__ = ["FORMAT", "Calibration", "DistanceTail", "Profile", "ProfileCheck", "Violation"]


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

    _subspace: Subspace | None = PrivateAttr(default=None)
    _check: ProfileCheck = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        # Arrays built once, not per request.
        limit2 = np.inf
        if (
            self.distance_limit is not None
            and self.components is not None
            and self.component_variances is not None
            and self.residual_variance is not None
        ):  # the validator makes these all set or all None
            self._subspace = Subspace(
                np.asarray(self.mean, dtype=np.float64),
                np.asarray(self.components, dtype=np.float64),
                np.asarray(self.component_variances, dtype=np.float64),
                self.residual_variance,
            )
            limit2 = self.distance_limit**2
        self._check = ProfileCheck(
            np.asarray(self.lower, dtype=np.float64),
            np.asarray(self.upper, dtype=np.float64),
            self.max_outside,
            self._subspace,
            limit2,
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
        folds = make_folds(flat.shape[0], holdout, seed)
        if max_outside is None:
            max_outside = fit_max_outside(flat, quantiles, margin, folds)
        lo, hi = bounds(flat, quantiles, margin)
        fields: dict[str, Any] = {}
        tail = None
        if distance and folds and flat.shape[0] >= 10 and flat.shape[1] >= 2:
            held_out = held_out_distances(flat, folds, n_components, explained)
            tail = DistanceTail.fit(held_out) if held_out is not None else None
            sub = Subspace.fit(flat, n_components, explained)
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
        return self._subspace.distances(flat)

    def outliers(self, rows: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows the profile refuses (either check)."""
        return self._check.outliers(rows)

    def first_violation(self, rows: np.ndarray) -> Violation | None:
        """The first row with more than ``max_outside`` features outside the bounds,
        or (if none) the first row farther from the data than ``distance_limit``."""
        return self._check.first_violation(rows)
