"""A profile's checks on the request path, and why a row was refused."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

from .subspace import Subspace


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
        subspace: Subspace | None,
        limit2: float,
    ) -> None:
        self.lo, self.hi, self.max_outside = lo, hi, max_outside
        self.subspace, self.limit2 = subspace, limit2

    def outliers(self, rows: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows refused (either check)."""
        _, _, too_many, far = self._evaluate(rows)
        mask: np.ndarray = too_many | far
        return mask

    def first_violation(self, rows: np.ndarray) -> Violation | None:
        """The first row with more than ``max_outside`` features outside the bounds,
        or (if none) the first row farther from the data than the distance limit."""
        flat, outside, too_many, far = self._evaluate(rows)
        if too_many.any():
            row = int(np.argmax(too_many))
            feature = int(np.argmax(outside[row]))
            return Violation(
                row=row,
                feature=feature,
                value=float(flat[row, feature]),
                lower=float(self.lo[feature]),
                upper=float(self.hi[feature]),
            )
        if far.any():
            return Violation(row=int(np.argmax(far)), kind="distance")
        return None

    def _evaluate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Both checks, once: the flat rows, which features lie outside the bounds,
        which rows have too many of those, and which lie too far from the data."""
        flat = np.asarray(rows, dtype=np.float64).reshape(rows.shape[0], -1)
        outside = (flat < self.lo) | (flat > self.hi)
        too_many = outside.sum(axis=1) > self.max_outside
        if self.subspace is None:
            far = np.zeros_like(too_many)
        else:
            far = self.subspace.squared(flat) > self.limit2
        return flat, outside, too_many, far
