"""Per-principal rate limits and query budgets, counted in rows, via the limits library."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio import strategies

from ..context import QueryContext
from ..errors import RateLimited, ServiceUnavailable
from ..policy import Policy
from ..storage import close_async_storage, open_async_storage

STRATEGIES: dict[str, Callable[[Any], strategies.RateLimiter]] = {
    "moving-window": strategies.MovingWindowRateLimiter,
    "fixed-window": strategies.FixedWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
}
NAMESPACE = "invguard"


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
        self.fail_open = policy.on_storage_error == "open"
        self.clock = clock
        self._policy = policy
        self._strategy_name = settings.strategy
        self._storage = storage
        self._strategy: strategies.RateLimiter | None = None

    @property
    def strategy(self) -> strategies.RateLimiter:
        # Opened on first use: an async storage belongs to the serving event loop.
        if self._strategy is None:
            if self._storage is None:
                self._storage = open_async_storage(self._policy)
            self._strategy = STRATEGIES[self._strategy_name](self._storage)
        return self._strategy

    @property
    def storage(self) -> Any:
        return self.strategy.storage

    async def aclose(self) -> None:
        if self._strategy is not None:
            await close_async_storage(self._strategy.storage)
            self._strategy = None
            self._storage = None

    def windows(self, ctx: QueryContext) -> list[_Window]:
        found: list[_Window] = []
        if ctx.tier_name in self.tier_limits:
            who = (
                ("principal", ctx.principal) if ctx.principal else ("anonymous", ctx.client or "-")
            )
            found += [
                _Window(item, (NAMESPACE, *who), "principal")
                for item in self.tier_limits[ctx.tier_name]
            ]
        if ctx.endpoint in self.endpoint_limits:
            found += [
                _Window(item, (NAMESPACE, "endpoint", ctx.endpoint), "endpoint")
                for item in self.endpoint_limits[ctx.endpoint]
            ]
        return found

    async def spend(self, ctx: QueryContext, cost: int) -> None:
        """Spend ``cost`` rows for the query, or raise RateLimited / ServiceUnavailable."""
        if cost <= 0 or not self.enabled:
            return
        windows = self.windows(ctx)
        if not windows:
            return
        try:
            stats = await self._bounded(
                self.strategy.get_window_stats(w.item, *w.identifiers) for w in windows
            )
            short = [i for i, st in enumerate(stats) if st.remaining < cost]
            if not short:
                hits = await self._bounded(
                    self.strategy.hit(w.item, *w.identifiers, cost=cost) for w in windows
                )
                short = [i for i, ok in enumerate(hits) if not ok]
        except Exception as exc:  # storage down, slow or refusing: the policy decides
            self._storage_failed(ctx, exc)
            return
        now = self.clock()
        remaining = [st.remaining - (0 if short else cost) for st in stats]
        tightest = min(range(len(windows)), key=lambda i: remaining[i])
        ctx.rate = LimitStatus(
            limit=windows[tightest].item.amount,
            remaining=remaining[tightest],
            reset_after=_seconds_until(stats[tightest].reset_time, now),
        )
        if short:
            rows = max(ctx.rows, cost)
            raise ctx.reject(self._refusal(windows, stats, short, cost, rows, now), "rate_limit")
        ctx.spent += cost
        ctx.decide("rate_limit", "spent", str(cost))

    async def _bounded(self, calls: Any) -> list[Any]:
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

    def _storage_failed(self, ctx: QueryContext, exc: BaseException) -> None:
        reason = type(exc).__name__
        if self.fail_open:
            ctx.decide("rate_limit", "not_applied", f"storage error: {reason}")
            return
        raise ctx.reject(
            ServiceUnavailable(
                "the rate-limit storage is unavailable, so the request was refused "
                "(on_storage_error: closed); try again shortly",
                headers={"Retry-After": "1"},
            ),
            "rate_limit",
        )


def _seconds_until(reset_time: float, now: float) -> int:
    return max(1, math.ceil(reset_time - now))
