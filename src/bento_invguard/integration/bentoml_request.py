"""The one place that reaches into BentoML for the current HTTP request."""

from __future__ import annotations

from typing import Any


def current_bentoml_request() -> Any | None:
    """The Starlette request BentoML is serving on this task, or None outside a request.

    BentoML keeps it in a context variable that ``bentoml.Context.request``
    reads; reading the variable directly avoids requiring a ``ctx`` argument.
    """
    try:
        from bentoml._internal.context import _request_var
    except ImportError:  # pragma: no cover - a BentoML without the variable
        return None
    return _request_var.get(None)
