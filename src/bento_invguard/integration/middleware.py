"""GuardMiddleware: the controls that run before the request body is parsed.

It authenticates the caller, gates the endpoint by tier, refuses a blocked
caller and BentoML's pickle media type, and caps the body. Everything that
needs the parsed input (validation, rate limits counted in rows, the shared
view, truncation, the monitor's update) runs in the pipeline, inside the API
call (:mod:`.pipeline`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..access import AccessControl, key_headers
from ..context import QueryContext, active_query, current_query
from ..errors import (
    Forbidden,
    GuardRejection,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from ..monitor import Monitor
from ..policy import DEFAULT_OPEN_PATHS, Policy
from ..ratelimit import RateLimiter
from .recorder import Recorder
from .request_body import replay
from .responder import Responder
from .responses import send_rejection

#: BentoML's internal serialisation; never accepted from outside.
REFUSED_MEDIA_TYPES = frozenset({"application/vnd.bentoml+pickle"})


class GuardMiddleware:
    """Pure ASGI middleware: authenticate, gate by tier, refuse blocked callers, cap the body.

    ``routes`` maps each guarded API's path to its API name. Every other path
    also needs a key (fail closed) unless it is an open path: health,
    readiness, metrics, schema and docs by default.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: Policy,
        routes: Mapping[str, str],
        open_paths: Iterable[str] = (),
        access: AccessControl | None = None,
        limiter: RateLimiter | None = None,
        recorder: Recorder | None = None,
        monitor: Monitor | None = None,
        view: Any = None,
    ) -> None:
        self.app = app
        self.policy = policy
        self.routes = dict(routes)
        self.access = access or AccessControl(policy)
        self.limiter = limiter or RateLimiter(policy)
        self.recorder = recorder or Recorder(policy)
        self.monitor = monitor or Monitor(policy)
        self.view = view  # the shared view, closed at shutdown
        from ..admin import AdminEndpoints

        self.admin = AdminEndpoints(policy, self.monitor)
        patterns = (*DEFAULT_OPEN_PATHS, *policy.open_paths, *open_paths)
        self._open_exact = frozenset(p for p in patterns if not _is_glob(p))
        self._open_globs = tuple(p for p in patterns if _is_glob(p))
        self.max_body = policy.input.max_body_bytes

    def is_open(self, path: str) -> bool:
        if path in self.routes:
            return False
        return path in self._open_exact or any(
            fnmatch.fnmatchcase(path, g) for g in self._open_globs
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # In front of BentoML's own middleware, which decodes some headers (header_screen).
            from .header_screen import install_header_screen

            install_header_screen(scope.get("app"), self)
            await self.app(scope, receive, self._closing_on_shutdown(send))
            return
        if scope["type"] == "http" and self.admin.handles(scope["path"]):
            refused = await self.admin(scope, send)
            if refused is not None:
                await send_rejection(send, refused)
            return
        if scope["type"] != "http" or self.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        client = scope.get("client")
        ctx = QueryContext(endpoint=self.routes.get(path), path=path, client=client and client[0])
        self.recorder.start(ctx)
        try:
            await self._guarded(ctx, scope, receive, send)
        finally:
            self.recorder.finish(ctx)

    async def _guarded(self, ctx: QueryContext, scope: Scope, receive: Receive, send: Send) -> None:
        # A query in flight in this context: the request comes from inside a guarded call.
        outer = current_query()
        self_call = False
        try:
            headers = key_headers(scope["headers"])
            if outer is not None and not headers:
                self_call = True
                raise ctx.reject(_self_call_refusal(ctx), "access")
            self.access.admit(ctx, headers)
            if ctx.endpoint is not None:
                self.access.gate(ctx)
                if self.monitor.enabled:
                    await self.monitor.check_block(ctx)
                content_types, content_lengths = _body_headers(scope["headers"])
                _refuse_media_type(ctx, content_types)
                body = await self._read_body(ctx, content_lengths, receive)
                if body is None:  # the client went away
                    return
                receive = replay(body, receive)
        except GuardRejection as rejection:
            if ctx.rejection is None:  # raised without ctx.reject (malformed key headers)
                ctx.reject(rejection, "access")
            ctx.status = rejection.status
            if self_call and outer is not None and outer.rejection is None:
                outer.rejection = rejection  # the calling query answers with this refusal
            await send_rejection(send, rejection)
            return
        # The query on the request (request.state.invguard) while it is served. Objects
        # that outlive the request keep the scope and the responder (uvicorn keeps the
        # scope until the connection's next request; a cancelled keep-alive timer keeps
        # BentoML's Request, whose send is the responder, for seconds): both let go of
        # the query at the end, so it is freed as soon as it is answered.
        state = scope.setdefault("state", {})
        state["invguard"] = ctx
        responder = Responder(ctx, send)
        try:
            with active_query(ctx):
                try:
                    await self.app(scope, receive, responder)
                except Exception:
                    if ctx.rejection is None or responder.started:
                        ctx.status = ctx.status or 500
                        raise
                    ctx.status = ctx.rejection.status
                    await send_rejection(send, ctx.rejection)
                    return
            await responder.flush()
        finally:
            state.pop("invguard", None)
            responder.release()

    def _closing_on_shutdown(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.recorder.check_model_age()
            if message["type"] == "lifespan.shutdown.complete":
                await self.limiter.aclose()
                await self.monitor.aclose()
                if self.view is not None:
                    await self.view.aclose()
                self.recorder.close()
            await send(message)

        return lifespan_send

    async def _read_body(
        self, ctx: QueryContext, content_lengths: list[bytes], receive: Receive
    ) -> bytes | None:
        for content_length in content_lengths:
            try:
                declared = int(content_length)
            except ValueError:
                raise ctx.reject(
                    InvalidInput("body", "the Content-Length header is not a number"), "body"
                ) from None
            if declared > self.max_body:
                raise ctx.reject(self._too_large(declared), "body")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise ctx.reject(self._too_large(size, at_least=True), "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, size: int, *, at_least: bool = False) -> PayloadTooLarge:
        amount = f"at least {size}" if at_least else str(size)
        return PayloadTooLarge(f"the body is {amount} bytes; the limit is {self.max_body} bytes")


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _self_call_refusal(ctx: QueryContext) -> Forbidden:
    """A keyless request made from inside a guarded call: BentoML's self-proxy.

    ``self.other_api(...)`` in a BentoML 1.4 service is an HTTP request to the
    service itself, without the caller's key. It is refused (fail closed), and
    the calling query with it, in the contract's form.
    """
    name = ctx.endpoint or ctx.path
    return Forbidden(
        f"guarded API {name!r} was called through BentoML's self-proxy "
        f"(self.{name}(...)), which carries no API key; call self.{name}.local(...) "
        "to run it in process as the same caller"
    )


def _body_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> tuple[list[bytes], list[bytes]]:
    """Every Content-Type and every Content-Length value, in one pass over the headers."""
    content_types: list[bytes] = []
    content_lengths: list[bytes] = []
    for name, value in raw_headers:
        name = name.lower()
        if name == b"content-type":
            content_types.append(value)
        elif name == b"content-length":
            content_lengths.append(value)
    return content_types, content_lengths


def _refuse_media_type(ctx: QueryContext, content_types: list[bytes]) -> None:
    for value in content_types:
        media_type = value.split(b";")[0].strip().lower().decode("latin-1")
        if media_type in REFUSED_MEDIA_TYPES:
            raise ctx.reject(
                UnsupportedMediaType(
                    f"{media_type} is not accepted by guarded APIs; send JSON. (BentoML "
                    "sends it between the services of one deployment: guard the entry "
                    "service, not its bentoml.depends dependencies.)"
                ),
                "body",
            )
