"""The guard's hold on a guarded response: a late rejection can still replace it."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Message, Send

from ..context import QueryContext
from ..errors import GuardRejection, InvalidInput
from .responses import schema_error_detail, send_rejection


def _encode(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class Responder:
    """Wraps ``send`` so a guard decision can still replace the app's response.

    The response start is held until the first body chunk: if by then a guard
    control has rejected the query (possibly by raising inside a stream), the
    client gets the rejection instead. BentoML's own 400 for a body that fails
    the API schema becomes a 422 ``invalid_input`` in the contract's form, and
    so does a 500 that BentoML gives before it called the API function: that
    is BentoML failing to parse or dispatch this request's body (a multipart
    body without a boundary, a ``**kwargs`` key such as ``self`` or ``func``),
    not the model failing.
    """

    __slots__ = ("_held", "_replaced", "_schema_error", "ctx", "send", "started")

    def __init__(self, ctx: QueryContext, send: Send) -> None:
        self.ctx = ctx
        self.send = send
        self.started = False  # something has gone to the client
        self._replaced = False
        self._held: Message | None = None
        self._schema_error: list[bytes] | None = None

    async def __call__(self, message: Message) -> None:
        if self._replaced:
            return
        if message["type"] == "http.response.start":
            self._held = message
            if self.ctx.endpoint is not None and self.ctx.rejection is None:
                status = message["status"]
                if status == 400 or (status == 500 and not self.ctx.api_called):
                    self._schema_error = []
            return
        if self._schema_error is not None:
            self._schema_error.append(message.get("body", b""))
            if not message.get("more_body", False):
                if self._held is not None and self._held["status"] == 400:
                    detail = schema_error_detail(b"".join(self._schema_error))
                else:
                    detail = "the request body could not be turned into the API's arguments"
                await self._replace(self.ctx.reject(InvalidInput("schema", detail), "validate"))
            return
        if not self.started:
            if self.ctx.rejection is not None:
                await self._replace(self.ctx.rejection)
                return
            await self._start()
        await self.send(message)

    async def _start(self) -> None:
        self.started = True
        if self._held is not None:
            self.ctx.status = self._held["status"]
            rate = self.ctx.rate  # the rows spent by this query: its RateLimit-* headers
            if rate is not None:
                self._held["headers"] = [*self._held.get("headers", []), *_encode(rate.headers())]
            await self.send(self._held)

    async def _replace(self, rejection: GuardRejection) -> None:
        self.started = self._replaced = True
        self.ctx.status = rejection.status
        await send_rejection(self.send, rejection)

    def release(self) -> None:
        """Let go of the query and the response once it is answered.

        The response is over by then: anything sent after it is dropped.
        """
        self._replaced = True
        self._held = None
        del self.ctx

    async def flush(self) -> None:
        """Send a held start that no body followed (an empty response)."""
        if self.started or self._held is None:
            return
        if self.ctx.rejection is not None:
            await self._replace(self.ctx.rejection)
        else:
            await self._start()
