"""Keep clients' mistakes out of the server's error log.

BentoML logs a full traceback at ERROR for every request body that fails its
schema, or that it cannot turn into the API's arguments at all (a multipart
body without a boundary, a ``**kwargs`` key such as ``func``), so any caller
could flood the error log with garbage bodies. Under the guard those requests
are answered with a 422 and recorded on the span and in the audit trail; the
traceback adds nothing, so it is dropped. An exception raised once the API
function was called (the model failing) is logged as before.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from ..bentoml_bridge import BENTOML_HTTP_LOGGER
from ..context import current_query
from ..errors import GuardRejection


class ClientErrorFilter(logging.Filter):
    """Drops BentoML's "Exception on <path>" records caused by client input."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (ValidationError, GuardRejection)):
            return False
        # BentoML failed before it called a guarded API: the body could not become its
        # arguments, and the guard answers 422 (integration.responder.Responder).
        query = current_query()
        return not (
            exc is not None
            and query is not None
            and query.endpoint is not None
            and not query.api_called
        )


def quiet_client_errors() -> None:
    """Install the filter once on BentoML's HTTP app logger."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())
