"""GuardPipeline: the controls that run inside an API call, in order."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..access import AccessControl, key_headers
from ..access.responses import rejection_response
from ..context import QueryContext, active_query, current_query
from ..errors import (
    GuardConfigError,
    GuardRejection,
    InvalidInput,
    PayloadTooLarge,
    Unauthenticated,
)
from ..hardening import OutputHardener
from ..monitor import Monitor, run_without_io
from ..policy import Policy, Tier
from ..ratelimit import RateLimiter
from ..storage import check_storage
from ..telemetry import Recorder, TelemetryOptions
from ..validation import InputValidator, Profile
from .bentoml_request import current_bentoml_request

LABEL_ONLY = Tier(output="label")


class GuardPipeline:
    """validate -> model -> harden, around one API, for the query in flight.

    Under :func:`protect` the middleware has already authenticated the caller;
    with :func:`guard` alone the pipeline authenticates from BentoML's request.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        scores_field: str | None = None,
        model_version: Callable[[], str] | None = None,
        telemetry: TelemetryOptions | None = None,
    ) -> None:
        self.policy = policy
        check_storage(policy)
        self.access = AccessControl(policy)
        self.limiter = RateLimiter(policy)
        self.recorder = Recorder(policy, telemetry or TelemetryOptions(under_bentoml=True))
        profile = None
        if policy.input.profile is not None:
            profile = Profile.load(policy.resolve(policy.input.profile))
        self.validator = InputValidator(policy.input, profile)
        self.hardener = OutputHardener(scores_field or policy.scores_field)
        self.monitor = Monitor(policy, profile, model_version or (lambda: "default"))

    def open(self, endpoint: str) -> QueryContext:
        """The query this call belongs to: the middleware's, a local_caller's, or a new one."""
        ctx = current_query()
        if ctx is not None:
            ctx.api_called = True
            if ctx.tier is None and ctx.tier_name is not None:  # a local_caller
                if ctx.tier_name not in self.policy.tiers:
                    raise GuardConfigError(f"local_caller: no tier named {ctx.tier_name!r}")
                ctx.tier = self.policy.tiers[ctx.tier_name]
            return ctx
        request = current_bentoml_request()
        if request is None:
            raise Unauthenticated(
                f"guarded API {endpoint!r} was called outside a request; wrap trusted "
                "in-process calls in bento_invguard.local_caller(tier=...)"
            )
        client = request.client.host if request.client else None
        ctx = QueryContext(
            endpoint=endpoint, path=request.url.path, client=client, opened_by_guard=True
        )
        self.recorder.start(ctx)
        return ctx

    def admit(self, ctx: QueryContext, value: Any) -> None:
        """Authenticate a query no middleware saw, then validate its input."""
        if ctx.opened_by_guard:
            self._admit_request(ctx)
        self.check_input(ctx, value)

    def _admit_request(self, ctx: QueryContext) -> None:
        request = current_bentoml_request()
        if request is None:  # opened_by_guard implies a request; fail closed all the same
            raise ctx.reject(Unauthenticated("no request to authenticate"), "access")
        try:  # the middleware's rule: a key header sent twice with two keys is refused
            headers = key_headers(request.scope["headers"])
        except GuardRejection as rejection:
            raise ctx.reject(rejection, "access") from None
        self.access.admit(ctx, headers)
        self.access.gate(ctx)
        declared = request.headers.get("content-length", "")
        if (
            declared.isascii()
            and declared.isdigit()
            and int(declared) > self.policy.input.max_body_bytes
        ):
            raise ctx.reject(
                PayloadTooLarge(
                    f"the body is {declared} bytes; the limit is "
                    f"{self.policy.input.max_body_bytes} bytes"
                ),
                "body",
            )

    def check_input(self, ctx: QueryContext, value: Any) -> None:
        try:
            ctx.input = self.validator(ctx, value)
        except GuardRejection as rejection:
            if isinstance(rejection, InvalidInput) and rejection.check == "profile":
                self.monitor.observe_refused_soon(ctx, value)  # off-data rows are a signal
            raise ctx.reject(rejection, "validate") from None

    def closing(self, ctx: QueryContext) -> _Closing:
        """Close the query however the call ends; a failure that is no rejection is a 500."""
        return _Closing(self, ctx)

    def close(self, ctx: QueryContext) -> None:
        """End a query the guard wrapper opened (the middleware ends its own)."""
        if ctx.opened_by_guard:
            if ctx.status is None:
                ctx.status = ctx.rejection.status if ctx.rejection else 200
            self.recorder.finish(ctx)

    async def spend_rows(self, ctx: QueryContext) -> None:
        """Spend the rows of the request not yet spent; refuse it whole if they don't fit."""
        if ctx.via_http and ctx.rows > ctx.spent:
            await self.limiter.spend(ctx, ctx.rows - ctx.spent)

    def spend_rows_from_thread(self, ctx: QueryContext) -> None:
        """spend_rows for sync APIs, which BentoML runs in a worker thread of its event loop."""
        if ctx.via_http and ctx.rows > ctx.spent and self.limiter.enabled:
            import anyio.from_thread

            anyio.from_thread.run(self.spend_rows, ctx)

    def harden(self, ctx: QueryContext, output: Any) -> Any:
        """Truncate for the tier, after the monitor has seen the scores (sync APIs)."""
        hardened = self._truncate(ctx, output, ctx.rows)
        if self.monitor.enabled and ctx.via_http:
            if self.monitor.in_process:
                run_without_io(self.monitor.assess(ctx))
            else:
                import anyio.from_thread

                anyio.from_thread.run(self.monitor.assess, ctx)
        return self._degraded(ctx, output, hardened)

    async def harden_async(self, ctx: QueryContext, output: Any) -> Any:
        """Truncate for the tier, after the monitor has seen the scores (async APIs)."""
        hardened = self._truncate(ctx, output, ctx.rows)
        if self.monitor.enabled and ctx.via_http:
            await self.monitor.assess(ctx)
        return self._degraded(ctx, output, hardened)

    def _truncate(self, ctx: QueryContext, output: Any, rows: int = 0) -> Any:
        if ctx.tier is None:  # cannot happen after open(); fail closed all the same
            raise Unauthenticated("no tier for this query")
        return self.hardener(ctx, output, ctx.tier, rows=rows)

    def _degraded(self, ctx: QueryContext, output: Any, hardened: Any) -> Any:
        if ctx.degraded and ctx.tier is not None and ctx.tier.output != "label":
            return self.hardener(ctx, output, LABEL_ONLY)
        return hardened

    def harden_item(self, ctx: QueryContext, item: Any) -> Any:
        """Harden one streamed item if it holds scores; pass other items (text) through."""
        if isinstance(item, (str, bytes)):
            return item
        return self._degraded(ctx, item, self._truncate(ctx, item))

    @staticmethod
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


class _Closing:
    """``with pipeline.closing(ctx):`` a class, not a generator: one per guarded call."""

    __slots__ = ("ctx", "pipeline")

    def __init__(self, pipeline: GuardPipeline, ctx: QueryContext) -> None:
        self.pipeline, self.ctx = pipeline, ctx

    def __enter__(self) -> QueryContext:
        return self.ctx

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if (
            exc_type is not None
            and issubclass(exc_type, Exception)
            and not issubclass(exc_type, GuardRejection)
        ):
            self.ctx.status = 500  # the model (or a server-side bug) failed
        self.pipeline.close(self.ctx)


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
