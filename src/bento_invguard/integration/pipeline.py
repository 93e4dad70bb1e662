"""GuardPipeline: the controls that run inside an API call, in order."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..access import AccessControl
from ..access.responses import rejection_response
from ..context import QueryContext, active_query, current_query
from ..errors import GuardConfigError, GuardRejection, PayloadTooLarge, Unauthenticated
from ..hardening import OutputHardener
from ..policy import Policy
from ..ratelimit import RateLimiter
from ..validation import InputValidator, Profile
from .bentoml_request import current_bentoml_request


class GuardPipeline:
    """validate -> model -> harden, around one API, for the query in flight.

    Under :func:`protect` the middleware has already authenticated the caller;
    with :func:`guard` alone the pipeline authenticates from BentoML's request.
    """

    def __init__(self, policy: Policy, *, scores_field: str | None = None) -> None:
        self.policy = policy
        self.access = AccessControl(policy)
        self.limiter = RateLimiter(policy)
        profile = None
        if policy.input.profile is not None:
            profile = Profile.load(policy.resolve(policy.input.profile))
        self.validator = InputValidator(policy.input, profile)
        self.hardener = OutputHardener(scores_field or policy.scores_field)

    def enter(self, endpoint: str) -> QueryContext:
        """The query this call belongs to; authenticates when no middleware did."""
        ctx = current_query()
        if ctx is not None:
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
        ctx = QueryContext(endpoint=endpoint, path=request.url.path)
        headers = {
            name: value.encode("latin-1")
            for name in ("authorization", "x-api-key")
            if (value := request.headers.get(name)) is not None
        }
        self.access.admit(ctx, headers)
        self.access.gate(ctx)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.policy.input.max_body_bytes:
            raise ctx.reject(
                PayloadTooLarge(
                    f"the body is {declared} bytes; the limit is "
                    f"{self.policy.input.max_body_bytes} bytes"
                ),
                "body",
            )
        return ctx

    def check_input(self, ctx: QueryContext, value: Any) -> None:
        try:
            self.validator(ctx, value)
        except GuardRejection as rejection:
            raise ctx.reject(rejection, "validate") from None

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
        if ctx.tier is None:  # cannot happen after enter(); fail closed all the same
            raise Unauthenticated("no tier for this query")
        return self.hardener(ctx, output, ctx.tier)

    def harden_item(self, ctx: QueryContext, item: Any) -> Any:
        """Harden one streamed item if it holds scores; pass other items (text) through."""
        if isinstance(item, (str, bytes)):
            return item
        return self.harden(ctx, item)

    @staticmethod
    def refuse(rejection: GuardRejection) -> Any:
        """The rejection as an HTTP response inside a request, raised outside one.

        Returning a response (BentoML sends a returned Response as is) rather
        than raising keeps a client's mistake out of the server's error log.
        """
        if current_bentoml_request() is not None:
            return rejection_response(rejection)
        raise rejection


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
