"""A reference profile of the training data: per-feature bounds, mean and spread.

Inversion and extraction attacks start from noise or synthetic inputs that no
real caller would send; a profile fitted on the training data turns those away.
Profiles are stored as JSON beside the policy (never pickle).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..errors import PolicyError

FORMAT = "bento_invguard.profile/1"


def _bounds(
    flat: np.ndarray, quantiles: tuple[float, float], margin: float
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.quantile(flat, quantiles[0], axis=0)
    hi = np.quantile(flat, quantiles[1], axis=0)
    spread = hi - lo
    fallback = float(spread.max()) if spread.size else 0.0
    widen = margin * np.where(spread > 0, spread, fallback)
    return lo - widen, hi + widen


def _fit_max_outside(
    flat: np.ndarray, quantiles: tuple[float, float], margin: float, holdout: float, seed: int
) -> int:
    n_holdout = round(flat.shape[0] * holdout)
    if not 0.0 < holdout < 1.0 or n_holdout < 1 or n_holdout >= flat.shape[0]:
        return 0
    order = np.random.default_rng(seed).permutation(flat.shape[0])
    held, rest = flat[order[:n_holdout]], flat[order[n_holdout:]]
    lo, hi = _bounds(rest, quantiles, margin)
    return int(((held < lo) | (held > hi)).sum(axis=1).max())


class Violation(BaseModel):
    row: int
    feature: int
    value: float
    lower: float
    upper: float


class Profile(BaseModel):
    """Per-feature bounds fitted on training data.

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

    _lo: np.ndarray = PrivateAttr()
    _hi: np.ndarray = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        # Arrays built once, so a check costs two vector comparisons.
        self._lo = np.asarray(self.lower, dtype=np.float64)
        self._hi = np.asarray(self.upper, dtype=np.float64)

    def __eq__(self, other: object) -> bool:
        # The cached bound arrays are derived data; compare the fields only.
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
    ) -> Profile:
        """Fit bounds on ``data`` of shape ``(n_samples, *feature_shape)``.

        Bounds are the given quantiles of each feature, widened by ``margin``
        times the feature's spread (the widest spread, for constant features).
        ``max_outside`` (how many features of a row may fall outside and still
        pass) is, unless given, the most that rows of a random ``holdout``
        share of the data show against bounds fitted on the rest: real rows
        from the same distribution pass, noise and synthetic probes do not.
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
        flat = x.reshape(x.shape[0], -1)
        if max_outside is None:
            max_outside = _fit_max_outside(flat, quantiles, margin, holdout, seed)
        lo, hi = _bounds(flat, quantiles, margin)
        return cls(
            feature_shape=tuple(int(d) for d in x.shape[1:]),
            n_samples=int(x.shape[0]),
            lower=tuple(float(v) for v in lo),
            upper=tuple(float(v) for v in hi),
            mean=tuple(float(v) for v in flat.mean(axis=0)),
            std=tuple(float(v) for v in flat.std(axis=0)),
            max_outside=max_outside,
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

    def first_violation(self, rows: np.ndarray) -> Violation | None:
        """The first row with more than ``max_outside`` features outside the bounds."""
        lo, hi = self._lo, self._hi
        flat = np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1)
        outside = (flat < lo) | (flat > hi)
        if not outside.any():
            return None
        too_many = outside.sum(axis=1) > self.max_outside
        if not too_many.any():
            return None
        row = int(np.argmax(too_many))
        feature = int(np.argmax(outside[row]))
        return Violation(
            row=row,
            feature=feature,
            value=float(flat[row, feature]),
            lower=float(lo[feature]),
            upper=float(hi[feature]),
        )
