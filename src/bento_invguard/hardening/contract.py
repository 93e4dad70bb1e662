"""The output contract, checked at startup where an API's return annotation tells.

A guarded API returns its scores: an ndarray of shape ``(n, classes)``, one
row of class scores per input row, or a dict / pydantic model whose
``scores_field`` holds them. What the annotation cannot tell (``-> np.ndarray``
that holds class labels, no annotation at all) is checked on the first call.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from ..errors import GuardConfigError

#: "scores": the annotation says the contract holds; "unknown": checked at the first call.
Contract = Literal["scores", "unknown"]

EXPECTED = (
    "the guard needs the model's scores: an ndarray of shape (n, classes), one row of "
    "class scores per input row (for example model.predict_proba(x), not model.predict(x)), "
    "or a dict / pydantic model whose scores_field holds them"
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_SEQUENCES = (list, tuple, collections.abc.Sequence)
_NUMBERS = (int, float)


def check_output_annotation(
    func: Callable[..., Any], api: str, scores_field: str | None
) -> Contract:
    """Refuse (:class:`GuardConfigError` naming ``api``) a return annotation that
    breaks the output contract.

    >>> import numpy as np
    >>> def predict(x: np.ndarray) -> np.ndarray: ...
    >>> check_output_annotation(predict, "predict", None)
    'scores'
    >>> def classify(x: np.ndarray) -> list[int]: ...
    >>> check_output_annotation(classify, "classify", None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bento_invguard.errors.GuardConfigError: API 'classify' returns list[int], ...
    """
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        return "unknown"  # each streamed item is checked as it is sent
    try:
        returned = typing.get_type_hints(func).get("return", Any)
    except Exception:  # a forward reference that does not resolve here
        return "unknown"
    problem = _problem(returned, api, scores_field)
    if problem is None:
        return "unknown" if _untold(returned) else "scores"
    raise GuardConfigError(f"API {api!r} returns {_name(returned)}, {problem}")


def _untold(returned: Any) -> bool:
    origin = typing.get_origin(returned)
    return (
        returned in (Any, object)
        or origin in (typing.Union, types.UnionType)
        or (returned in _SEQUENCES and origin is None)
    )


def _problem(returned: Any, api: str, field: str | None) -> str | None:
    """Why ``returned`` cannot hold the scores; None if it can or cannot be told."""
    if _untold(returned):
        return None
    origin = typing.get_origin(returned) or returned
    where = _where(api, field)
    if origin is np.ndarray:
        if field is None:
            return None
        return f"an ndarray, but scores_field={field!r} is set for it: {where}"
    if inspect.isclass(origin) and issubclass(origin, BaseModel):
        if field is None:
            return f"a pydantic model, but no scores_field names the field of the scores: {where}"
        if field not in origin.model_fields:
            known = ", ".join(origin.model_fields) or "none"
            return f"which has no field {field!r} (its fields: {known}): {where}"
        return None
    if origin in _MAPPINGS or typing.is_typeddict(origin):
        if field is None:
            return f"a dict, but no scores_field says which key holds the scores: {where}"
        if typing.is_typeddict(origin) and field not in typing.get_type_hints(origin):
            return f"which has no key {field!r}: {where}"
        return None
    if origin in _SEQUENCES and field is None:
        args = typing.get_args(returned)
        inner = typing.get_origin(args[0]) or args[0] if args else None
        if inner in _NUMBERS or inner is bool:
            return f"one value per row (class labels?), not (n, classes) scores; {EXPECTED}"
        return None
    return f"{EXPECTED}; {where}"


def _where(api: str, field: str | None) -> str:
    if field is None:
        return (
            f"name the field with protect(..., apis={{{api!r}: {{'scores_field': ...}}}}) or "
            f"@guard(scores_field=...), or leave the API unguarded with "
            f"protect(..., skip=[{api!r}])"
        )
    return (
        "return an ndarray of (n, classes) scores, or set scores_field for this API alone "
        f"with protect(..., apis={{{api!r}: {{'scores_field': ...}}}})"
    )


def _name(returned: Any) -> str:
    if inspect.isclass(returned) and typing.get_origin(returned) is None:
        return returned.__name__
    return str(returned).replace("typing.", "").replace("numpy.", "np.")
