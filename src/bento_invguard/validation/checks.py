"""Strict checks of the model input: shape, dtype, finite, range, profile.

BentoML's own validators coerce (reshape, cast overflow to inf) and skip
ndarray inputs; these only check, and name the first offending position.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..context import QueryContext
from ..errors import InvalidInput
from ..policy import InputPolicy
from ..reference import Profile, Violation

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
        if profile is not None and spec.shape is not None and profile.feature_shape != spec.shape:
            from ..errors import PolicyError

            raise PolicyError(
                f"input.profile: fitted for rows of shape {list(profile.feature_shape)}, "
                f"but input.shape is {list(spec.shape)}"
            )

    def __call__(self, ctx: QueryContext, value: Any) -> np.ndarray:
        arr = self._as_array(value)
        self._check_shape(arr)
        self._check_values(arr)
        self._check_profile(arr)
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
        """Refuse the first value that is not finite, or below min, or above max.

        NaN fails no comparison, so with ``finite: false`` it passes the range.
        """
        spec = self.spec
        if spec.finite and arr.dtype.kind == "f":
            _refuse_first(~np.isfinite(arr), arr, "finite", "non-finite value {value} at {at}")
        if spec.min is not None:
            _refuse_first(
                arr < spec.min, arr, "range", f"value {{value}} at {{at}} is below min {spec.min}"
            )
        if spec.max is not None:
            _refuse_first(
                arr > spec.max, arr, "range", f"value {{value}} at {{at}} is above max {spec.max}"
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


def _refuse_first(bad: np.ndarray, arr: np.ndarray, check: str, detail: str) -> None:
    """Raise for the first position where ``bad`` is set (row-major order), if any."""
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidInput(check, detail.format(value=arr[at], at=_position(at)), position=at)


def _describe_dtype(arr: np.ndarray) -> str:
    names = {"b": "booleans", "U": "strings", "S": "bytes", "O": "mixed objects", "c": "complex"}
    return names.get(arr.dtype.kind, str(arr.dtype))
