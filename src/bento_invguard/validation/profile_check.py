"""A profile's checks on the request path, and why a row was refused."""

from __future__ import annotations

from collections.abc import Callable
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
