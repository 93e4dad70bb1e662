"""Strict checks of the model input: shape, dtype, finite, range, profile.

BentoML's own validators coerce (reshape, cast overflow to inf) and skip
ndarray inputs; these only check, and name the first offending position.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from ..context import QueryContext
from ..errors import InvalidInput
from ..policy import InputPolicy
from .profile import Profile, Violation

_KINDS = {"float": "fiu", "int": "iu", "number": "fiu"}


def _position(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


class InputValidator:
    """Checks one API input against the policy's ``input`` section and a profile."""

    def __init__(self, spec: InputPolicy, profile: Profile | None = None) -> None:
        self.spec = spec
        self.profile = profile
        self._profile_check = profile.check if profile is not None else None
        self._profile_shape = tuple(profile.feature_shape) if profile is not None else ()
        self._kinds = _KINDS[spec.dtype]
        # Rows the profile clearly accepts pass the finite and range checks too.
        self._fast_accept = (
            profile.check.fast_accept(spec.min, spec.max) if profile is not None else None
        )
        self._max_rows = spec.max_rows if spec.max_rows is not None else sys.maxsize
        if profile is not None and spec.shape is not None and profile.feature_shape != spec.shape:
            from ..errors import PolicyError

            raise PolicyError(
                f"input.profile: fitted for rows of shape {list(profile.feature_shape)}, "
                f"but input.shape is {list(spec.shape)}"
            )

    def __call__(self, ctx: QueryContext, value: Any) -> np.ndarray:
        arr = self._as_array(value)
        if not self._clearly_allowed(arr):
            self._check_shape(arr)
            self._check_values(arr)
        return self._passed(ctx, arr)

    def _clearly_allowed(self, arr: np.ndarray) -> bool:
        """The usual request, in one step: rows of the profile's shape (the policy's,
        if set), no more than ``max_rows``, that the profile's fast accept passes
        (so they are finite and in range too). False: the full checks decide."""
        accept = self._fast_accept
        shape = arr.shape
        return (
            accept is not None
            and 0 < shape[0] <= self._max_rows
            and shape[1:] == self._profile_shape
            and accept(arr)
        )

    @staticmethod
    def _passed(ctx: QueryContext, arr: np.ndarray) -> np.ndarray:
        ctx.rows = rows = int(arr.shape[0])
        ctx.decide("validate", "pass", f"{rows} rows")
        return arr

    def _as_array(self, value: Any) -> np.ndarray:
        if isinstance(value, np.ndarray):
            arr = value
        else:
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError) as exc:
                raise InvalidInput("shape", f"not a rectangular array: {exc}") from None
        if arr.ndim == 0:
            raise InvalidInput("shape", "expected a batch of rows, got a single value")
        if arr.dtype.kind not in self._kinds:
            raise InvalidInput(
                "dtype",
                f"expected {self.spec.dtype} values, got {_describe_dtype(arr)}",
            )
        return arr

    def _check_shape(self, arr: np.ndarray) -> None:
        spec = self.spec
        if arr.shape[0] == 0:
            raise InvalidInput("shape", "empty batch: at least one row is required")
        if spec.shape is not None and arr.shape[1:] != spec.shape:
            want = "(n, " + ", ".join(str(d) for d in spec.shape) + ")"
            raise InvalidInput("shape", f"expected {want}, got {tuple(arr.shape)}")
        if spec.max_rows is not None and arr.shape[0] > spec.max_rows:
            raise InvalidInput(
                "shape", f"{arr.shape[0]} rows in one request; at most {spec.max_rows}"
            )

    def _check_values(self, arr: np.ndarray) -> None:
        if not self._within_bounds(arr):
            self._find_bad_value(arr)
        self._check_profile(arr)

    def _within_bounds(self, arr: np.ndarray) -> bool:
        """The common case in two reductions: every value finite and within [min, max].

        NaN makes both comparisons false, so any doubt goes to the exact search.
        Rows of no values (shape (n, 0), when the policy sets no shape) hold none.
        """
        if arr.size == 0:
            return True
        low, high = float(arr.min()), float(arr.max())
        spec = self.spec
        return (
            math.isfinite(low)
            and math.isfinite(high)
            and (spec.min is None or low >= spec.min)
            and (spec.max is None or high <= spec.max)
        )

    def _find_bad_value(self, arr: np.ndarray) -> None:
        """Raise for the first value that fails finite / min / max, naming its position."""
        spec = self.spec
        if spec.finite and arr.dtype.kind == "f":
            bad = ~np.isfinite(arr)
            if bad.any():
                at = tuple(np.argwhere(bad)[0])
                raise InvalidInput(
                    "finite", f"non-finite value {arr[at]} at {_position(at)}", position=at
                )
        if spec.min is not None:
            low = arr < spec.min
            if low.any():
                at = tuple(np.argwhere(low)[0])
                raise InvalidInput(
                    "range",
                    f"value {arr[at]} at {_position(at)} is below min {spec.min}",
                    position=at,
                )
        if spec.max is not None:
            high = arr > spec.max
            if high.any():
                at = tuple(np.argwhere(high)[0])
                raise InvalidInput(
                    "range",
                    f"value {arr[at]} at {_position(at)} is above max {spec.max}",
                    position=at,
                )

    def _check_profile(self, arr: np.ndarray) -> None:
        check = self._profile_check
        if check is not None:
            if arr.shape[1:] != self._profile_shape:
                raise InvalidInput(
                    "shape",
                    f"the reference profile expects rows of shape "
                    f"{self._profile_shape}, got {tuple(arr.shape[1:])}",
                )
            v = check.first_violation(arr)
            if v is not None:
                raise InvalidInput("profile", v.detail, position=self._violation_at(v))

    def _violation_at(self, v: Violation) -> tuple[int, ...]:
        """[row] for a row far from the data; [row, *index of the feature] for a bound."""
        if v.kind == "distance" or v.feature < 0:
            return (v.row,)
        return (v.row, *(int(i) for i in np.unravel_index(v.feature, self._profile_shape)))


def _describe_dtype(arr: np.ndarray) -> str:
    names = {"b": "booleans", "U": "strings", "S": "bytes", "O": "mixed objects", "c": "complex"}
    return names.get(arr.dtype.kind, str(arr.dtype))
