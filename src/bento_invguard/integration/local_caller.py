"""local_caller: trusted in-process calls of guarded APIs, as a named caller."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..context import QueryContext, active_query


@contextlib.contextmanager
def local_caller(tier: str, principal: str = "local") -> Iterator[QueryContext]:
    """Run trusted in-process calls of guarded APIs as ``principal`` in ``tier``.

    Guarded APIs refuse calls that come with no request (fail closed); a batch
    job or a test that calls the service object directly says who it is:

    >>> with local_caller(tier="trusted", principal="nightly-job"):  # doctest: +SKIP
    ...     svc.predict(x)
    """
    ctx = QueryContext(endpoint=None, principal=principal, tier_name=tier, via_http=False)
    with active_query(ctx):
        yield ctx
