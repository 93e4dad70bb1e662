"""Per-principal rate limits and query budgets, counted in rows, via the limits library.

limits' strategies over one limits storage, through their public calls only.
A spend of ``rows`` goes in two steps:

1. Read every window's counts (``get_window_stats``). If one has less room
   than ``rows``, refuse the request: nothing is spent.
2. Hit the windows in turn (``hit(item, ..., cost=rows)``), fixed windows
   first, then the others, the one with least room left first. Each hit is
   one atomic check-and-count in the storage (a lock in memory, a Lua script
   or an INCRBY in Redis). If a hit is refused, because another worker took
   the room after step 1, the fixed windows hit so far get their rows back
   (the refused one too: a fixed window's hit counts even when it refuses)
   and the request is refused.

What is exact: a window admits a spend only through its own atomic check, so
across workers on one Redis a window never admits more than its limit.
Refunds only take back rows of spends that were not admitted. A request
refused in step 1 spends nothing. The residual race: when a hit in step 2
refuses, rows already taken by moving windows or sliding window counters
hit before it stay spent (limits has no public call that removes them), so
the caller loses up to ``rows`` of room in those windows until they slide
past; it never gains room. It needs two such windows and one hit after the
first to lose its room between steps 1 and 2; hitting the window with least
room first makes that the less likely case.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from limits import WindowStats
from limits.aio import strategies
from limits.aio.storage import MemoryStorage, Storage

from ..context import QueryContext
from ..policy import Policy
from ..storage import StorageFailures, close_async_storage, is_storage_error, open_async_storage
from .status import LimitStatus, refusal, status_after
from .windows import Window, WindowPlan

STRATEGIES: dict[str, Callable[[Storage], strategies.RateLimiter]] = {
    "moving-window": strategies.MovingWindowRateLimiter,
    "fixed-window": strategies.FixedWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
}
#: A fixed window gets rows back only while it has this many seconds left. limits'
#: storages give rows back as ``incr`` by a negative amount, which on a window that
#: expired in between would start the next window below zero (room for more than
#: its limit). A window about to end is left as it is: its caller loses at most the
#: refused rows, for at most this long. (Left open: a stall of more than this between
#: reading the expiry and the refund reaching Redis, exactly as the window ends.)
REFUND_MARGIN_SECONDS = 1.0
logger = logging.getLogger("bento_invguard")


class RateLimiter:
    """Spends a query's rows against every window that applies to it, or refuses it whole.

    Storage calls are bounded by ``rate_limiting.timeout``; a storage failure
    follows ``on_storage_error``.

    >>> import asyncio
    >>> from bento_invguard import Policy, QueryContext
    >>> limiter = RateLimiter(Policy(tiers={"public": {"rate_limit": "10/minute"}}))
    >>> ctx = QueryContext(endpoint="predict", principal="alice", tier_name="public")
    >>> asyncio.run(limiter.spend(ctx, 4)).remaining
    6
    """

    def __init__(
        self, policy: Policy, storage: Storage | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.plan = WindowPlan(policy)
        self.enabled = bool(self.plan)
        self.timeout = policy.rate_limiting.timeout
        self.clock = clock
        self._policy = policy
        self._storage = storage
        self._strategies: dict[str, strategies.RateLimiter] = {}
        self._storage_failed = StorageFailures(policy, "rate_limit", "rate-limit")

    @property
    def storage(self) -> Storage:
        # Opened on first use: an async storage belongs to the serving event loop.
        if self._storage is None:
            self._storage = open_async_storage(self._policy)
        return self._storage

    def strategy(self, name: str) -> strategies.RateLimiter:
        found = self._strategies.get(name)
        if found is None:
            found = self._strategies[name] = STRATEGIES[name](self.storage)
        return found

    def windows(self, ctx: QueryContext) -> list[Window]:
        return self.plan.for_query(ctx)

    async def aclose(self) -> None:
        if self._storage is not None:
            await close_async_storage(self._storage)
            self._strategies.clear()
            self._storage = None

    async def spend(self, ctx: QueryContext, rows: int) -> LimitStatus | None:
        """Spend ``rows`` for the query; raise RateLimited (429) if any window lacks room.

        Returns the tightest window's status after the spend, or None if no
        window applies or the storage failed and the policy serves anyway.
        """
        if rows <= 0 or not self.enabled:
            return None
        windows = self.windows(ctx)
        if not windows:
            return None
        try:
            if isinstance(self.storage, MemoryStorage):  # no I/O to bound
                stats, short = await self._spend(windows, rows)
            else:
                stats, short = await asyncio.wait_for(self._spend(windows, rows), self.timeout)
        except Exception as exc:  # storage down, slow or refusing: the policy decides
            self._storage_failed(ctx, exc)
            return None
        now = self.clock()
        if short:
            raise ctx.reject(refusal(windows, stats, short, rows, now, ctx.rows), "rate_limit")
        ctx.decide("rate_limit", "spent", str(rows))
        return status_after(windows, stats, rows, now)

    async def _spend(self, windows: list[Window], rows: int) -> tuple[list[WindowStats], list[int]]:
        """Every window's counts before the spend, and the windows that refused it."""
        stats = await self._read(windows)
        short = [i for i, st in enumerate(stats) if st.remaining < rows]
        if short:
            return stats, short
        refused = await self._hit_in_turn(windows, stats, rows)
        if refused is None:
            return stats, []
        return await self._read(windows), [refused]

    async def _read(self, windows: list[Window]) -> list[WindowStats]:
        calls = [
            self.strategy(w.strategy).get_window_stats(w.item, *w.identifiers) for w in windows
        ]
        if isinstance(self.storage, MemoryStorage):
            return [await call for call in calls]  # no I/O: a task per call would only cost
        return list(await asyncio.gather(*calls))

    async def _hit_in_turn(
        self, windows: list[Window], stats: list[WindowStats], rows: int
    ) -> int | None:
        """Hit each window; on a refusal give back what can be, and return its index."""

        def order(i: int) -> tuple[bool, float]:
            # Refundable first; then the least room left (relative to the limit) first.
            return (not windows[i].refundable, (stats[i].remaining - rows) / windows[i].item.amount)

        taken: list[Window] = []
        for i in sorted(range(len(windows)), key=order):
            window = windows[i]
            admitted = await self.strategy(window.strategy).hit(
                window.item, *window.identifiers, cost=rows
            )
            if window.refundable:
                taken.append(window)  # counted, admitted or not
            if not admitted:
                await self._refund(taken, rows)
                return i
        return None

    async def _refund(self, windows: list[Window], rows: int) -> None:
        storage = self.storage
        for window in windows:
            key = window.key
            try:
                if isinstance(storage, MemoryStorage):
                    await storage.decr(key, rows)  # in process: never below zero, no expiry race
                elif await storage.get_expiry(key) - time.time() > REFUND_MARGIN_SECONDS:
                    await storage.incr(key, window.item.get_expiry(), amount=-rows)
            except Exception as exc:
                if not is_storage_error(exc):
                    raise
                # The request is refused either way; the caller loses these rows.
                logger.warning("bento_invguard: giving rows back to %s failed (%r)", key, exc)
