"""Keep clients' mistakes out of the server's error log.

BentoML logs a full traceback at ERROR for every request body that fails its
schema, so any caller could flood the error log with garbage bodies. Under
the guard those requests are answered with a 422 and recorded on the span and
in the audit trail; the traceback adds nothing, so it is dropped.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from ..errors import GuardRejection

BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class ClientErrorFilter(logging.Filter):
    """Drops BentoML's "Exception on <path>" records caused by client input."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, (ValidationError, GuardRejection))


def quiet_client_errors() -> None:
    """Install the filter once on BentoML's HTTP app logger."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())
