"""Finding the model input among an API method's arguments, cheaply, per call."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import GuardConfigError, InvalidInput

_CONTEXT_NAMES = ("ctx", "context")
_MISSING = object()


class InputLocator:
    """Picks the input argument once at decoration time; fetching it is an index."""

    def __init__(
        self, func: Callable[..., Any], argument: str | None = None, *, api: str | None = None
    ) -> None:
        params = list(inspect.signature(func).parameters.values())
        if params and params[0].name == "self":
            params = params[1:]
        candidates = [
            p
            for p in params
            if p.name not in _CONTEXT_NAMES
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        name, _, dotted = (argument or "").partition(".")
        if not name:
            name = _default_argument(func, candidates, api or func.__name__)
        names = [p.name for p in candidates]
        if name not in names:
            raise GuardConfigError(
                f"{func.__qualname__}: no argument named {name!r} to validate "
                f"(arguments: {', '.join(names) or 'none'})"
            )
        self.name = name
        self.fields = tuple(dotted.split(".")) if dotted else ()
        # +1: the wrapped function is the unbound method, called with self first.
        self.position = 1 + [p.name for p in params].index(name)
        self.default = next(p.default for p in candidates if p.name == name)

    def __call__(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        value = kwargs.get(self.name, _MISSING)
        if value is _MISSING:
            value = args[self.position] if len(args) > self.position else self.default
        if value is _MISSING or value is inspect.Parameter.empty or value is None:
            raise InvalidInput("shape", f"argument {self.name!r} is missing")
        for field in self.fields:
            value = value.get(field) if isinstance(value, Mapping) else getattr(value, field, None)
            if value is None:
                raise InvalidInput("shape", f"field {field!r} of {self.name!r} is missing")
        return value


def _default_argument(
    func: Callable[..., Any], candidates: list[inspect.Parameter], api: str
) -> str:
    if not candidates:
        raise GuardConfigError(
            f"API {api!r} ({func.__qualname__}) has no input argument, so there is nothing "
            f"to guard; leave it unguarded with protect(..., skip=[{api!r}]) (it still "
            "needs a key unless its path is in open_paths)"
        )
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolved forward references: fall back to the text
        hints = {p.name: p.annotation for p in candidates}
    for p in candidates:
        if "ndarray" in str(hints.get(p.name, "")):
            return p.name
    return candidates[0].name
