"""HeaderScreen: refuse header bytes that BentoML's own outer middleware cannot decode.

BentoML 1.4 wraps every user middleware, :class:`GuardMiddleware` included,
in its own (``ServiceAppFactory.middlewares``): metrics, OpenTelemetry's ASGI
middleware, the access log, timeout and concurrency limits. HTTP servers pass
header bytes 0x80-0xFF (obs-text) through, and two of those layers decode
request headers as text:

- ``OpenTelemetryMiddleware`` (opentelemetry-instrumentation-asgi) decodes
  ``Host``, ``User-Agent`` and the headers its propagators read
  (``traceparent``, ``tracestate``, ``baggage`` by default) as UTF-8, else
  as ``unicode_escape``, which raises on bytes such as ``b"\\x80\\\\"``: a 500
  before the guard runs. With
  ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`` set it
  decodes every request header.
- BentoML's ``AccessLogMiddleware`` decodes ``Content-Type`` and
  ``Content-Length`` as UTF-8 while it sends the last body chunk: the client
  gets a status line and headers, then a closed connection.

A middleware inside those layers cannot prevent either, and BentoML has no
hook for wrapping a service's whole ASGI app. So :class:`GuardMiddleware`,
when it sees the lifespan scope, calls :func:`install_header_screen` on
``scope["app"]``: Starlette builds ``app.middleware_stack`` on its first
call, which is that lifespan call (``bentoml serve`` runs uvicorn with a
lifespan, and so does a ``TestClient`` used as a context manager; BentoML
starts the service in the lifespan, so it serves nothing without one), and
never rebuilds it. Replacing the built stack with ``HeaderScreen(stack)``
puts the screen in front of every layer for every later request, for this
app only: no third-party module is patched. A second lifespan of the same
app finds the screen in place and does not add another.

The rule is one a client can follow: the screened headers must be UTF-8
text, as both decoders try first. Such bytes are invalid in ``Host``,
``Content-Type``, ``Content-Length`` and the trace headers anyway; a
``User-Agent`` in Latin-1, which OpenTelemetry would have decoded as
``unicode_escape``, is refused too, for one rule rather than a mirror of
that fallback. Valid UTF-8 passes. Header names are not screened: HTTP
servers only deliver token names, which are ASCII.

A refused request never reaches BentoML's metrics, tracing or access log;
on a guarded path it gets the guard's own query span, metrics and audit
record (error.type ``invalid_header``). The screen costs one
``bytes.isascii()`` per request header; the name is looked at only for a
value that is not ASCII.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ..context import QueryContext
from ..errors import InvalidHeader
from .responses import send_rejection

if TYPE_CHECKING:
    from .middleware import GuardMiddleware

OnReject = Callable[[Scope, InvalidHeader], None]

logger = logging.getLogger("bento_invguard")

#: Decoded by BentoML's access log (Content-*) and OpenTelemetry's ASGI middleware (Host,
#: User-Agent), besides the headers the configured propagators read.
DECODED_OUTSIDE = frozenset({b"host", b"user-agent", b"content-type", b"content-length"})
#: Set, OpenTelemetry's ASGI middleware decodes every request header to capture some.
CAPTURE_HEADERS_ENV = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST"
#: WebSocket close code for a refused handshake (policy violation); servers answer it with 403.
POLICY_VIOLATION = 1008


def decoded_outside() -> frozenset[bytes] | None:
    """The request headers the layers outside the guard decode as text; None: all of them.

    >>> b"user-agent" in decoded_outside()  # doctest: +SKIP
    True
    """
    if os.environ.get(CAPTURE_HEADERS_ENV):
        return None
    from opentelemetry import propagate

    fields: Iterable[str] = propagate.get_global_textmap().fields
    return DECODED_OUTSIDE | {f.lower().encode("latin-1") for f in fields}


class HeaderScreen:
    """Pure ASGI: answer 400 ``invalid_header`` for a screened header that is not UTF-8.

    ``names`` are the lower-case header names to screen (None: every header);
    ``on_reject(scope, rejection)`` is told of each refusal and must not raise.

    >>> app = HeaderScreen(inner_app, names={b"user-agent"})  # doctest: +SKIP
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        names: Iterable[bytes] | None = DECODED_OUTSIDE,
        on_reject: OnReject | None = None,
    ) -> None:
        self.app = app
        self.names = None if names is None else frozenset(n.lower() for n in names)
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" or scope["type"] == "websocket":
            for name, value in scope["headers"]:
                if not value.isascii() and self._refuses(name, value):
                    await self._refuse(scope, receive, send, name)
                    return
        await self.app(scope, receive, send)

    def _refuses(self, name: bytes, value: bytes) -> bool:
        if self.names is not None and name.lower() not in self.names:
            return False
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, name: bytes) -> None:
        header = name.lower().decode("latin-1")
        rejection = InvalidHeader(
            header,
            f"the {header} header is not valid UTF-8; send it as ASCII (or UTF-8) text",
        )
        if self.on_reject is not None:
            self.on_reject(scope, rejection)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            return
        await send_rejection(send, rejection)


def install_header_screen(app: Any, guard: GuardMiddleware | None = None) -> bool:
    """Put a :class:`HeaderScreen` in front of a started Starlette app's whole middleware stack.

    Called by ``guard`` at lifespan startup with ``scope["app"]``; its
    refusals of guarded paths are then recorded like its own (span, metrics,
    audit). True if a screen was installed; False if one already was, or
    ``app`` is not a started Starlette app (logged: the screen is missing).
    """
    stack = getattr(app, "middleware_stack", None)
    if isinstance(stack, HeaderScreen):
        return False
    if stack is None:
        if app is None:  # a bare ASGI harness, no Starlette app around the guard
            return False
        logger.warning(
            "bento_invguard: %r is not a started Starlette app; request headers that "
            "BentoML's access log or OpenTelemetry middleware cannot decode are not screened",
            type(app).__name__,
        )
        return False
    on_reject = _recording(guard) if guard is not None else None
    app.middleware_stack = HeaderScreen(stack, names=decoded_outside(), on_reject=on_reject)
    return True


def _recording(guard: GuardMiddleware) -> OnReject:
    """Record a refusal of a guarded path as ``guard`` records its own rejections."""

    def record(scope: Scope, rejection: InvalidHeader) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or guard.admin.handles(path) or guard.is_open(path):
            return
        client = scope.get("client")
        ctx = QueryContext(endpoint=guard.routes.get(path), path=path, client=client and client[0])
        guard.recorder.start(ctx)
        ctx.reject(rejection, "headers")
        ctx.status = rejection.status
        guard.recorder.finish(ctx)

    return record
