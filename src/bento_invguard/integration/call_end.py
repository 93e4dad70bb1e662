"""How a guarded call ends: the query closed however it ends, a rejection answered."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..bentoml_bridge import current_bentoml_request
from ..context import QueryContext
from ..errors import GuardRejection
from .responses import rejection_response


def refuse(ctx: QueryContext | None, rejection: GuardRejection) -> Any:
    """The rejection as an HTTP response inside a request, raised outside one.

    Returning a response (BentoML sends a returned Response as is) rather
    than raising keeps a client's mistake out of the server's error log.
    """
    if ctx is not None:
        ctx.rejection = rejection
        ctx.status = rejection.status
    if current_bentoml_request() is not None:
        return rejection_response(rejection)
    raise rejection


class Closing:
    """``with pipeline.closing(ctx):`` a class, not a generator: one per guarded call."""

    __slots__ = ("close", "ctx")

    def __init__(self, close: Callable[[QueryContext], None], ctx: QueryContext) -> None:
        self.close, self.ctx = close, ctx

    def __enter__(self) -> QueryContext:
        return self.ctx

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if (
            exc_type is not None
            and issubclass(exc_type, Exception)
            and not issubclass(exc_type, GuardRejection)
        ):
            self.ctx.status = 500  # the model (or a server-side bug) failed
        self.close(self.ctx)
