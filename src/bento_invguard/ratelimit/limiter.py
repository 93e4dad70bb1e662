"""Per-principal rate limits and query budgets, counted in rows, via the limits library."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio import strategies

from ..context import QueryContext
from ..errors import RateLimited
from ..policy import Policy
from ..storage import (
    StorageFailures,
    close_async_storage,
    is_memory,
    open_async_storage,
    storage_uri,
)
from .counted import ONE_STEP_STRATEGIES, WindowCount, WindowHit
from .memory import SweepingMemoryStorage
from .redis_hits import pipelined_hits_for, refund_fixed_windows

STRATEGIES: dict[str, Callable[[Any], strategies.RateLimiter]] = {
    "moving-window": strategies.MovingWindowRateLimiter,
    "fixed-window": strategies.FixedWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
}
NAMESPACE = "invguard"
#: Below this many rows left (as last seen), counts are read before spending.
PRECHECK_MARGIN = 5
logger = logging.getLogger("bento_invguard")


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """The most constraining window after a spend: what the RateLimit-* headers say."""

    limit: int
    remaining: int
    reset_after: int  # seconds until the window frees up

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(self.reset_after),
        }


@dataclass(frozen=True, slots=True)
class _Window:
    item: RateLimitItem
    identifiers: tuple[str, ...]
    scope: str  # "principal" or "endpoint", for messages
    strategy: str
    key: str  # the storage key, as limits' strategies build it
    expiry: int
    hit: WindowHit  # the same, for a one-step hit


@dataclass(frozen=True, slots=True)
class _Stats:
    reset_time: float
    remaining: int


#: A storage's one-step hit: the windows and rows in, each window's counts out.
_OneStep = Callable[[list[WindowHit], int], "list[WindowCount] | Awaitable[list[WindowCount]]"]
#: With strategy "auto", windows up to this long are moving windows (exact over any
#: interval); longer ones, the budgets, are fixed windows (one counter, O(1) memory).
AUTO_MOVING_MAX_SECONDS = 3600
#: Callers whose windows are kept built (about 1 KB each); beyond it the cache starts
#: again, so a worker holds at most ~10 MB of them.
WINDOW_CACHE_SIZE = 10_000
#: Callers whose last-seen remaining rows are kept (a hint for the fast path).
HINTS_SIZE = 100_000


def strategy_for(item: RateLimitItem, configured: str) -> str:
    if configured != "auto":
        return configured
    return "moving-window" if item.get_expiry() <= AUTO_MOVING_MAX_SECONDS else "fixed-window"


class RateLimiter:
    """Spends a query's rows against every window that applies to it, or refuses it whole.

    Each spend reads all windows' counts concurrently, refuses without spending
    if any window lacks room, then hits all windows concurrently; a hit is
    atomic in the storage, so across workers a window never admits more than
    its limit. Storage calls are bounded by ``rate_limiting.timeout``; a
    failure follows ``on_storage_error``.
    """

    def __init__(
        self, policy: Policy, storage: Any = None, clock: Callable[[], float] = time.time
    ) -> None:
        settings = policy.rate_limiting
        self.tier_limits = {
            name: tuple(parse_many(tier.rate_limit))
            for name, tier in policy.tiers.items()
            if tier.rate_limit
        }
        self.endpoint_limits = {
            name: tuple(parse_many(limit)) for name, limit in settings.endpoints.items()
        }
        self.enabled = bool(self.tier_limits or self.endpoint_limits)
        self.timeout = settings.timeout
        self._storage_failed = StorageFailures(policy, "rate_limit", "rate-limit")
        self.clock = clock
        self._policy = policy
        self._strategy_name = settings.strategy
        self._storage = storage
        self._strategies: dict[str, strategies.RateLimiter] = {}
        # Last seen remaining rows per principal/endpoint, a hint for the fast path only.
        # A stale hint only costs a refused request its refund (hits are atomic).
        self._hints: dict[tuple[str, ...], int] = {}
        self._in_process = is_memory(storage_uri(policy)) if storage is None else False
        # The windows of each (tier, caller, endpoint), built once: keys are strings to join.
        self._windows: dict[tuple[str | None, ...], list[_Window]] = {}
        # Resolved once, at the first spend: the storage's one-step hit, if it has one.
        self._one_step: _OneStep | None = None
        self._one_step_known = False

    def limiter(self, name: str) -> strategies.RateLimiter:
        # Opened on first use: an async storage belongs to the serving event loop.
        if self._storage is None:
            self._storage = open_async_storage(self._policy)
        if name not in self._strategies:
            self._strategies[name] = STRATEGIES[name](self._storage)
        return self._strategies[name]

    @property
    def storage(self) -> Any:
        if self._storage is None:
            self._storage = open_async_storage(self._policy)
        return self._storage

    async def aclose(self) -> None:
        if self._storage is not None:
            await close_async_storage(self._storage)
            self._strategies.clear()
            self._storage = None
            self._one_step, self._one_step_known = None, False

    def windows(self, ctx: QueryContext) -> list[_Window]:
        who = ("principal", ctx.principal) if ctx.principal else ("anonymous", ctx.client or "-")
        cache_key = (ctx.tier_name, ctx.endpoint, *who)
        found = self._windows.get(cache_key)
        if found is not None:
            return found
        found = []
        if ctx.tier_name in self.tier_limits:
            found += [
                self._window(item, who, "principal") for item in self.tier_limits[ctx.tier_name]
            ]
        if ctx.endpoint in self.endpoint_limits:
            found += [
                self._window(item, ("endpoint", ctx.endpoint), "endpoint")
                for item in self.endpoint_limits[ctx.endpoint]
            ]
        if len(self._windows) >= WINDOW_CACHE_SIZE:
            self._windows.clear()
        self._windows[cache_key] = found
        return found

    def _window(self, item: RateLimitItem, who: tuple[str, str], scope: str) -> _Window:
        name = strategy_for(item, self._strategy_name)
        # The strategy is part of the key: strategies keep different Redis types, and
        # switching strategy must not meet the old keys (WRONGTYPE) until they expire.
        identifiers = (NAMESPACE, name, *who)
        key, expiry = item.key_for(*identifiers), item.get_expiry()
        return _Window(
            item, identifiers, scope, name, key, expiry, WindowHit(name, key, item.amount, expiry)
        )

    def _hit(self, window: _Window, cost: int) -> Awaitable[bool]:
        """One window's hit: the storage call limits' strategy makes, with the key built once."""
        if window.strategy == "moving-window":
            storage: Any = self.storage
            return storage.acquire_entry(  # type: ignore[no-any-return]
                window.key, window.item.amount, window.expiry, amount=cost
            )
        if window.strategy == "fixed-window":
            return self._fixed_hit(window, cost)
        return self.limiter(window.strategy).hit(window.item, *window.identifiers, cost=cost)

    async def _fixed_hit(self, window: _Window, cost: int) -> bool:
        storage: Any = self.storage
        count = await storage.incr(window.key, window.expiry, amount=cost)
        return bool(count <= window.item.amount)

    async def _stats(self, window: _Window) -> Any:
        """Reset time and rows left in one window, as limits' get_window_stats reads them."""
        storage: Any = self.storage
        if window.strategy == "moving-window":
            start, used = await storage.get_moving_window(
                window.key, window.item.amount, window.expiry
            )
            return _Stats(start + window.expiry, window.item.amount - used)
        if window.strategy == "fixed-window":
            used = await storage.get(window.key)
            return _Stats(await storage.get_expiry(window.key), max(0, window.item.amount - used))
        return await self.limiter(window.strategy).get_window_stats(
            window.item, *window.identifiers
        )

    async def spend(self, ctx: QueryContext, cost: int) -> LimitStatus | None:
        """Spend ``cost`` rows for the query, or raise RateLimited / ServiceUnavailable.

        Fast path, one storage round trip: hit every window at once. Near a
        limit (by this worker's last look) the counts are read first, so a
        request that would not fit is refused without spending anything.
        """
        if cost <= 0 or not self.enabled:
            return None
        windows = self.windows(ctx)
        if not windows:
            return None
        hint_key = windows[0].identifiers
        try:
            hint = self._hints.get(hint_key)
            if hint is None or hint < cost + PRECHECK_MARGIN:
                stats = await self._bounded(self._stats_calls(windows))
                short = [i for i, st in enumerate(stats) if st.remaining < cost]
                if short:
                    self._refuse(ctx, windows, stats, short, cost)
            one_step = self._one_step_hit()
            if one_step is not None:
                counts = one_step([w.hit for w in windows], cost)
                if not isinstance(counts, list):  # Redis: awaited, within the timeout
                    counts = await self._bounded_one(counts)
                hits = [c.acquired for c in counts]
                after: list[Any] | None = counts  # each has reset_time and remaining
            else:
                hits, after = await self._bounded(self._hit(w, cost) for w in windows), None
            if not all(hits):
                await self._refund(windows, cost)
                stats = await self._bounded(self._stats_calls(windows))
                self._refuse(ctx, windows, stats, [i for i, ok in enumerate(hits) if not ok], cost)
        except RateLimited:
            raise
        except Exception as exc:  # storage down, slow or refusing: the policy decides
            self._storage_failed(ctx, exc)
            return None
        ctx.decide("rate_limit", "spent", str(cost))
        if after is not None:
            return self._status(windows, after, hint_key)
        return await self._read_status(windows, hint_key)

    def _one_step_hit(self) -> _OneStep | None:
        """The storage's hit-with-counts: in-process memory or plain Redis, for moving
        and fixed windows (None: sliding-window-counter, or another storage)."""
        if not self._one_step_known:
            self._one_step_known = True
            storage = self.storage
            if self._strategy_name not in ("auto", *ONE_STEP_STRATEGIES):
                self._one_step = None
            elif isinstance(storage, SweepingMemoryStorage):
                self._one_step = storage.hit_windows
            elif (pipelined := pipelined_hits_for(storage)) is not None:
                self._one_step = pipelined.hit
        return self._one_step

    async def _bounded_one(self, call: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(call, self.timeout)

    async def status(self, ctx: QueryContext) -> LimitStatus | None:
        """The query's RateLimit-* status, read after its last spend (None if unknown)."""
        pending = ctx.rate
        if isinstance(pending, asyncio.Future):
            try:
                ctx.rate = await asyncio.wait_for(pending, self.timeout)
            except Exception:
                ctx.rate = None
        return ctx.rate if isinstance(ctx.rate, LimitStatus) else None

    def _track_status(
        self, ctx: QueryContext, windows: list[_Window], hint_key: tuple[str, ...]
    ) -> None:
        previous = ctx.rate
        if isinstance(previous, asyncio.Future):
            previous.cancel()
        # Read the counts after the hit, concurrently with the model; the
        # response waits for them only when its headers are sent.
        ctx.rate = asyncio.ensure_future(self._read_status(windows, hint_key))

    async def _read_status(self, windows: list[_Window], hint_key: tuple[str, ...]) -> LimitStatus:
        return self._status(windows, await self._bounded(self._stats_calls(windows)), hint_key)

    def _status(
        self, windows: list[_Window], stats: list[Any], hint_key: tuple[str, ...]
    ) -> LimitStatus:
        tightest = min(range(len(windows)), key=lambda i: stats[i].remaining)
        if len(self._hints) >= HINTS_SIZE:
            self._hints.clear()
        self._hints[hint_key] = stats[tightest].remaining
        return LimitStatus(
            limit=windows[tightest].item.amount,
            remaining=stats[tightest].remaining,
            reset_after=_seconds_until(stats[tightest].reset_time, self.clock()),
        )

    def _stats_calls(self, windows: list[_Window]) -> list[Any]:
        return [self._stats(w) for w in windows]

    async def _refund(self, windows: list[_Window], cost: int) -> None:
        # A fixed-window hit counts even when it fails; give those rows back.
        fixed = [w for w in windows if w.strategy == "fixed-window"]
        if fixed:
            storage: Any = self.storage
            decr = getattr(storage, "decr", None)  # limits' Redis storages have none
            if decr is not None:
                await self._bounded(decr(w.key, cost) for w in fixed)
            else:
                await self._bounded_one(refund_fixed_windows(storage, [w.key for w in fixed], cost))

    def _refuse(
        self,
        ctx: QueryContext,
        windows: list[_Window],
        stats: list[Any],
        short: list[int],
        cost: int,
    ) -> None:
        now = self.clock()
        self._hints[windows[0].identifiers] = min(st.remaining for st in stats)
        rows = max(ctx.rows, cost)
        rejection = self._refusal(windows, stats, short, cost, rows, now)
        ctx.rate = None
        raise ctx.reject(rejection, "rate_limit")

    async def _bounded(self, calls: Any) -> list[Any]:
        if self._in_process:
            # memory:// does no I/O: awaiting in turn avoids a task per call.
            return [await call for call in calls]
        return list(await asyncio.wait_for(asyncio.gather(*calls), self.timeout))

    def _refusal(
        self,
        windows: list[_Window],
        stats: list[Any],
        short: list[int],
        cost: int,
        rows: int,
        now: float,
    ) -> RateLimited:
        first = short[0]
        window = windows[first]
        retry_after = max(_seconds_until(stats[s].reset_time, now) for s in short)
        who = "this key" if window.scope == "principal" else f"endpoint {window.identifiers[-1]!r}"
        if rows > window.item.amount:
            detail = f"{rows} rows in one request exceed the whole limit of {window.item} for {who}"
        else:
            detail = (
                f"limit {window.item} reached for {who}; "
                f"{max(0, stats[first].remaining)} left, this request needs {cost}"
            )
        status = LimitStatus(window.item.amount, max(0, stats[first].remaining), retry_after)
        return RateLimited(detail, headers={"Retry-After": str(retry_after), **status.headers()})


def _seconds_until(reset_time: float, now: float) -> int:
    return max(1, math.ceil(reset_time - now))
