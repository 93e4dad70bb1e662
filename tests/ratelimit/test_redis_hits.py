"""Rate limits on Redis: every window's hit and counts in one pipeline, exact and recoverable."""

from __future__ import annotations

import asyncio

import pytest
import redis
from limits import parse

from bento_invguard import Policy, QueryContext
from bento_invguard.errors import RateLimited
from bento_invguard.ratelimit import RateLimiter

pytestmark = pytest.mark.redis


def _ctx(principal: str = "alice") -> QueryContext:
    return QueryContext(endpoint="predict", principal=principal, tier_name="public")


def _policy(redis_url: str, limits: str) -> Policy:
    # Generous storage timeouts (the call's and the socket's): these tests are about
    # counts, and 80 spends in flight on a busy 2-core machine can outlast the
    # defaults (0.5 s, and 0.25 s to read or to connect), which gives a 503, not a count.
    return Policy(
        tiers={"public": {"rate_limit": limits}},
        storage=redis_url,
        storage_options={"socket_timeout": 5.0, "socket_connect_timeout": 5.0},
        rate_limiting={"timeout": 5.0},
    )


def test_status_after_a_pipelined_spend_equals_a_fresh_read(redis_url: str) -> None:
    """The RateLimit status from the pipeline is what limits' own reads give right after."""

    async def run() -> int:
        limiter = RateLimiter(_policy(redis_url, "45/second;50/minute;1000/day"))
        compared = 0
        try:
            for i in range(60):
                ctx = _ctx(f"p{i % 2}")
                try:
                    await limiter.spend(ctx, 1 + i % 3)
                except RateLimited:
                    continue
                windows = limiter.windows(ctx)
                one_step = limiter._one_step_hit()  # the pipelined path
                assert one_step is not None and "RedisWindowHits" in repr(one_step)
                status = await limiter.status(ctx)
                fresh = await limiter._read_status(windows, windows[0].identifiers)
                assert status is not None
                assert (status.limit, status.remaining) == (fresh.limit, fresh.remaining)
                assert abs(status.reset_after - fresh.reset_after) <= 1
                compared += 1
        finally:
            await limiter.aclose()
        return compared

    assert asyncio.run(run()) > 20


def test_two_workers_admit_exactly_the_limit(redis_url: str) -> None:
    """Two limiters on one Redis, 80 concurrent one-row spends: exactly 30 get through.

    The refused ones are 429s, and the day budget (a fixed window, which
    counts a hit even when another window refuses it) gets their rows back:
    it counts the 30 answered rows only. (limits' Redis storage has no
    ``decr``; the refund once failed there, and the refusal became a 503.)
    """
    policy = _policy(redis_url, "30/minute;1000/day")
    left_in_day: list[int] = []

    async def run() -> int:
        workers = [RateLimiter(policy), RateLimiter(policy)]

        async def one(i: int) -> bool:
            try:
                await workers[i % 2].spend(_ctx(), 1)
                return True
            except RateLimited:
                return False

        try:
            for worker in workers:  # past the first spend's read-first path
                await worker.spend(_ctx("warm"), 1)
            answered = sum(await asyncio.gather(*(one(i) for i in range(80))))
            day = [w for w in workers[0].windows(_ctx()) if w.strategy == "fixed-window"]
            left_in_day.append((await workers[0]._stats(day[0])).remaining)
            return answered
        finally:
            for worker in workers:
                await worker.aclose()

    assert asyncio.run(run()) == 30
    assert left_in_day == [1000 - 30]


def test_flushed_scripts_count_each_spend_once(redis_url: str) -> None:
    """After SCRIPT FLUSH (or a Redis restart), with some of limits' scripts loaded again
    by another caller and some not, a spend still counts its rows exactly once."""
    from limits.aio.strategies import FixedWindowRateLimiter

    async def run() -> tuple[list[int], int]:
        limiter = RateLimiter(_policy(redis_url, "10/minute;1000/day"))
        left = []
        try:
            for i in range(4):
                if i == 2:
                    redis.Redis.from_url(redis_url).script_flush()
                    # another limits user reloads one script (incr_expire) only
                    await FixedWindowRateLimiter(limiter.storage).hit(parse("5/hour"), "other")
                ctx = _ctx()
                await limiter.spend(ctx, 3 if i == 3 else 1)
                status = await limiter.status(ctx)
                assert status is not None
                left.append(status.remaining)
            day = [w for w in limiter.windows(_ctx()) if w.strategy == "fixed-window"]
            used_today = 1000 - (await limiter._stats(day[0])).remaining
        finally:
            await limiter.aclose()
        return left, used_today

    left, used_today = asyncio.run(run())
    assert left == [9, 8, 7, 4]
    assert used_today == 6


def test_a_refund_never_starts_the_next_window_below_zero(redis_url: str) -> None:
    """Rows given back to a fixed window that has expired meanwhile are dropped, not
    carried into the next window as a negative count (extra rows for the caller)."""
    from bento_invguard.ratelimit.redis_hits import refund_fixed_windows

    async def run() -> tuple[int, int, int]:
        limiter = RateLimiter(_policy(redis_url, "1000/day"))
        try:
            ctx = _ctx("refunded")
            await limiter.spend(ctx, 2)
            (day,) = limiter.windows(ctx)
            await refund_fixed_windows(limiter.storage, [day.key], 5)  # more than spent
            clamped = int(await limiter.storage.get(day.key))
            await limiter.storage.clear(day.key)  # the window expires
            await refund_fixed_windows(limiter.storage, [day.key], 5)
            after_expiry = int(await limiter.storage.get(day.key))
            exists = await limiter.storage.bridge.get_connection().exists(
                limiter.storage.bridge.prefixed_key(day.key)
            )
        finally:
            await limiter.aclose()
        return clamped, after_expiry, exists

    assert asyncio.run(run()) == (0, 0, 0)
