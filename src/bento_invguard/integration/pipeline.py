"""GuardPipeline: the controls that run inside an API call, in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..access import AccessControl
from ..bentoml_bridge import current_bentoml_request
from ..context import QueryContext, current_query
from ..errors import (
    Blocked,
    GuardConfigError,
    GuardRejection,
    InvalidInput,
    Unauthenticated,
)
from ..hardening import OutputHardener
from ..monitor import Monitor, run_without_io
from ..policy import Policy, Tier
from ..ratelimit import RateLimiter
from ..reference import Profile
from ..storage import StorageFailures, check_storage
from ..telemetry import TelemetryOptions
from ..validation import InputValidator
from ..view import Judgement, SharedView
from ..view.entries import CLASS, SILENT
from ..view.setup import open_shared_view
from ..watermark import watermark_hook
from .call_end import Closing
from .recorder import Recorder
from .request_admission import admit_request

LABEL_ONLY = Tier(output="label")
logger = logging.getLogger("bento_invguard")


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
        rate = policy.monitor.target_false_positive_rate / 2  # the other half: the view's
        if policy.input.profile is not None:
            profile = Profile.load(policy.resolve(policy.input.profile)).calibrated(rate)
        elif policy.monitor.enabled:
            logger.warning(
                "bento_invguard: no reference profile (input.profile): off-data probes "
                "(noise, synthetic inputs) are not refused, and the shared view's radius is "
                "not calibrated on the data; fit one with `invguard profile fit`"
            )
        self.validator = InputValidator(policy.input, profile)
        self.hardener = OutputHardener(scores_field or policy.scores_field)
        version = model_version or (lambda: "default")
        self.hardener.marker = watermark_hook(policy, version)
        self.monitor = Monitor(policy, version, on_blocks=self.recorder.add_blocked_principals)
        self.view: SharedView | None = open_shared_view(policy, profile, version)
        self.silent = policy.monitor.on_detect == "silent"
        self._view_failed = StorageFailures(policy, "view", "shared view")
        self._pending: set[asyncio.Task[None]] = set()  # refused requests being counted

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

    async def admit(self, ctx: QueryContext, value: Any) -> None:
        """Admit a query before its input is checked: a query no middleware saw is
        authenticated and checked for a block here (under @protect the middleware has);
        then the rows it sent are spent, answered or refused, in this one place.
        Refuses the request whole (429) if they don't fit."""
        if ctx.opened_by_guard:
            admit_request(ctx, self.access, self.policy.input.max_body_bytes)
            await self.monitor.check_block(ctx)
        if ctx.via_http and self.limiter.enabled:
            ctx.rate = await self.limiter.spend(ctx, rows_sent(value))

    def admit_from_thread(self, ctx: QueryContext, value: Any) -> None:
        """admit for sync APIs, which BentoML runs in a worker thread of its event loop."""
        if ctx.opened_by_guard or (ctx.via_http and self.limiter.enabled):
            import anyio.from_thread

            anyio.from_thread.run(self.admit, ctx, value)

    def check_input(self, ctx: QueryContext, value: Any) -> None:
        try:
            ctx.input = self.validator(ctx, value)
        except GuardRejection as rejection:
            ctx.reject(rejection, "validate")
            if isinstance(rejection, InvalidInput) and rejection.check == "profile":
                self._count_refused(ctx, value)  # off-data rows are a signal
            raise rejection from None

    def _count_refused(self, ctx: QueryContext, value: Any) -> None:
        """Count the refused rows: at once in process, else awaited from a sync API's
        thread or scheduled from the event loop's own (the request is refused anyway)."""
        rows = rows_sent(value)
        if self.monitor.in_process:
            run_without_io(self.monitor.observe_refused(ctx, rows))
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync API's worker thread
            self._run(ctx, self.monitor.observe_refused(ctx, rows))
            return
        task = loop.create_task(self.monitor.observe_refused(ctx, rows))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _run(self, ctx: QueryContext, call: Any) -> Any:
        """Await ``call`` from a sync API's worker thread (directly with in-process state)."""
        if self.monitor.in_process:
            return run_without_io(call)
        import anyio.from_thread

        async def wait() -> Any:
            return await call

        return anyio.from_thread.run(wait)

    def closing(self, ctx: QueryContext) -> Closing:
        """Close the query however the call ends; a failure that is no rejection is a 500."""
        return Closing(self.close, ctx)

    def close(self, ctx: QueryContext) -> None:
        """End a query the guard wrapper opened (the middleware ends its own)."""
        if ctx.opened_by_guard:
            if ctx.status is None:
                ctx.status = ctx.rejection.status if ctx.rejection else 200
            self.recorder.finish(ctx)

    async def judge(self, ctx: QueryContext, stream: bool = False) -> Judgement | None:
        """Judge the validated rows against every caller's recent queries, before the
        model; with ``on_detect: refuse`` a request with a probing row is refused (403).
        A ``stream`` has no whole answer to replace: its rows are kept unanswered now,
        and a probing one is refused whatever ``on_detect`` says."""
        if self.view is None or not ctx.via_http or ctx.input is None:
            return None
        try:
            judgement = await self.view.judge(ctx, ctx.input)
        except Exception as exc:
            self._view_failed(ctx, exc)
            return None
        if stream and not judgement.any_probing:
            await self._keep(ctx, judgement, None)
            return None
        if judgement.any_probing and (stream or not self.silent):
            await self._keep(ctx, judgement, None)
            await self.monitor.observe_refused(ctx, int(judgement.probing.sum()), probing=True)
            raise ctx.reject(
                Blocked(
                    "this query belongs to a cluster of near-identical recent queries "
                    "(probing, from one key or many); it is not answered"
                ),
                "view",
            )
        return judgement

    def judge_from_thread(self, ctx: QueryContext, stream: bool = False) -> Judgement | None:
        """:meth:`judge` for sync APIs (BentoML runs them in a worker thread)."""
        if self.view is None or not ctx.via_http:
            return None
        judgement: Judgement | None = self._run(ctx, self.judge(ctx, stream))
        return judgement

    def harden(self, ctx: QueryContext, output: Any, judgement: Judgement | None = None) -> Any:
        """Truncate for the tier, after the monitor and the view have seen the answer."""
        hardened, answers = self._answer(ctx, output, judgement)
        if self.monitor.enabled and ctx.via_http:
            self._run(ctx, self._after(ctx, judgement, answers))
        return self._degraded(ctx, output, hardened, answers)

    async def harden_async(
        self, ctx: QueryContext, output: Any, judgement: Judgement | None = None
    ) -> Any:
        """:meth:`harden` for async APIs."""
        hardened, answers = self._answer(ctx, output, judgement)
        if self.monitor.enabled and ctx.via_http:
            await self._after(ctx, judgement, answers)
        return self._degraded(ctx, output, hardened, answers)

    def _answer(
        self, ctx: QueryContext, output: Any, judgement: Judgement | None
    ) -> tuple[Any, Any]:
        """The tier's answer, with silent answers for probing rows: (hardened, answers)."""
        hardened = self._truncate(ctx, output, ctx.rows)
        if judgement is None or ctx.predicted is None:
            return hardened, None
        answers = judgement.answers(ctx.predicted, self.silent)
        silenced = {i: int(a) & CLASS for i, a in enumerate(answers.tolist()) if a & SILENT}
        if silenced:
            ctx.decide("view", "silent", f"{len(silenced)} rows answered silently")
            hardened = self._truncate(ctx, output, ctx.rows, silenced)
        return hardened, answers

    async def _after(self, ctx: QueryContext, judgement: Judgement | None, answers: Any) -> None:
        """Keep the rows in the view and assess the key: at once on shared storage (one
        wait for both), one after the other in process (where nothing waits)."""
        rows = 0 if ctx.scores is None else len(ctx.scores)
        probing = judgement.probing if judgement is not None else np.zeros(rows, dtype=bool)
        repeat = judgement.repeat if judgement is not None else np.zeros(rows, dtype=bool)
        assess = self.monitor.assess(ctx, probing, repeat)
        if judgement is None:
            await assess
        elif self.monitor.in_process:
            await self._keep(ctx, judgement, answers)
            await assess
        else:
            await asyncio.gather(self._keep(ctx, judgement, answers), assess)

    async def _keep(self, ctx: QueryContext, judgement: Judgement, answers: Any) -> None:
        if self.view is None:
            return
        try:
            await self.view.keep(ctx.principal or f"@{ctx.client}", judgement, answers)
        except Exception as exc:
            self._view_failed(ctx, exc)

    def _truncate(
        self, ctx: QueryContext, output: Any, rows: int, silenced: dict[int, int] | None = None
    ) -> Any:
        if ctx.tier is None:  # cannot happen after open(); fail closed all the same
            raise Unauthenticated("no tier for this query")
        return self.hardener(ctx, output, ctx.tier, rows=rows, silenced=silenced)

    def _degraded(self, ctx: QueryContext, output: Any, hardened: Any, answers: Any = None) -> Any:
        if ctx.degraded and ctx.tier is not None and ctx.tier.output != "label":
            silenced = None
            if answers is not None:
                silenced = {i: int(a) & CLASS for i, a in enumerate(answers.tolist()) if a & SILENT}
            return self.hardener(ctx, output, LABEL_ONLY, rows=ctx.rows, silenced=silenced)
        return hardened

    def harden_item(self, ctx: QueryContext, item: Any) -> Any:
        """Harden one streamed item if it holds scores; pass other items (text) through."""
        if isinstance(item, (str, bytes)):
            return item
        return self._degraded(ctx, item, self._truncate(ctx, item, 0))


def rows_sent(value: Any) -> int:
    """The rows a request sent, before they are checked: its length if it is a batch."""
    if isinstance(value, (str, bytes, Mapping)):
        return 1
    try:
        return max(1, len(value))
    except TypeError:
        return 1
