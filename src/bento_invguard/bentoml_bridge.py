"""The one module that reaches into BentoML's internals (written against BentoML 1.4.39).

BentoML 1.4 has no public API for three things the guard needs; each is read
here, lazily (at import time BentoML has not loaded the serving
configuration yet), and each falls back to a safe default when BentoML's
internals move:

- its tracer provider: BentoML builds one from the service's ``tracing``
  configuration and never sets it as the global provider, so the guard's
  spans must start from it to join BentoML's traces;
- the HTTP request being served: ``bentoml.Context.request`` reads a context
  variable that only an API with a ``ctx`` argument receives; ``@guard``
  must find the request of any API;
- BentoML's home directory when ``$BENTOML_HOME`` is not set, and the name of
  the logger BentoML's HTTP app logs client errors to.

The worker's index comes from the public ``bentoml.server_context``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger("bento_invguard")

#: The logger of BentoML's HTTP app (it logs each client error with a traceback).
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


def bentoml_tracer_provider() -> Any | None:
    """The tracer provider of BentoML's own server spans, or ``None`` without BentoML."""
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return BentoMLContainer.tracer_provider.get()
    except Exception:  # BentoML missing or misconfigured: fall back to the global provider
        logger.debug("bento_invguard: BentoML's tracer provider is unavailable", exc_info=True)
        return None


def current_bentoml_request() -> Any | None:
    """The Starlette request BentoML is serving on this task, or None outside a request."""
    try:
        from bentoml._internal.context import _request_var
    except ImportError:  # pragma: no cover - a BentoML without the variable
        return None
    return _request_var.get(None)


def worker_index() -> int:
    """Index of this BentoML worker process (0 outside a BentoML server)."""
    try:
        from bentoml import server_context

        return int(server_context.worker_index or 0)
    except Exception:
        return 0


def bentoml_home() -> str:
    """BentoML's home directory (``$BENTOML_HOME``, default ``~/bentoml``)."""
    home = os.environ.get("BENTOML_HOME")
    if home:
        return home
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return str(BentoMLContainer.bentoml_home.get())
    except Exception:
        return os.path.join(os.path.expanduser("~"), "bentoml")
