"""On Redis, across workers: a window never admits more than its limit, refunds included."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from bento_invguard import Policy, QueryContext
from bento_invguard.errors import RateLimited
from bento_invguard.ratelimit import RateLimiter

pytestmark = pytest.mark.redis


def _ctx(principal: str = "alice") -> QueryContext:
    return QueryContext(endpoint="predict", principal=principal, tier_name="public")


def _policy(redis_url: str, limits: str, endpoints: dict[str, str] | None = None) -> Policy:
    # Generous storage timeouts: these tests are about counts, and 80 spends in flight
    # on a busy 2-core machine can outlast the defaults, which gives a 503, not a count.
    return Policy(
        tiers={"public": {"rate_limit": limits}},
        storage=redis_url,
        storage_options={"socket_timeout": 5.0, "socket_connect_timeout": 5.0},
        rate_limiting={"timeout": 5.0, "endpoints": endpoints or {}},
    )


async def _burst(workers: list[RateLimiter], spends: list[tuple[str, int]]) -> list[int]:
    """Spend concurrently, round robin over the workers; the rows of each admitted spend."""

    async def one(i: int, principal: str, rows: int) -> int:
        try:
            await workers[i % len(workers)].spend(_ctx(principal), rows)
            return rows
        except RateLimited:
            return 0

    return list(await asyncio.gather(*(one(i, p, r) for i, (p, r) in enumerate(spends))))


def test_two_workers_admit_exactly_the_limit(redis_url: str) -> None:
    """Two limiters (two connection pools) on one Redis, 80 concurrent spends of 1-3 rows:
    exactly 30 rows get through, and the day budget (a fixed window, which counts a hit
    even when it refuses) counts those 30 only: every refused hit was given back."""

    async def run() -> tuple[int, int]:
        workers = [RateLimiter(_policy(redis_url, "30/minute;1000/day")) for _ in range(2)]
        try:
            admitted = await _burst(workers, [("alice", 1 + i % 3) for i in range(80)])
            day = FixedWindowRateLimiter(workers[0].storage)
            stats = await day.get_window_stats(
                parse("1000/day"), "invguard", "fixed-window", "principal", "alice"
            )
            return sum(admitted), 1000 - stats.remaining
        finally:
            for worker in workers:
                await worker.aclose()

    admitted, counted_today = asyncio.run(run())
    assert admitted in (28, 29, 30)  # spends of 2 or 3 rows may not fill the last room
    assert admitted == counted_today


def test_one_row_spends_fill_the_window_exactly(redis_url: str) -> None:
    """With one-row spends every row of room is used: exactly the limit, across workers."""

    async def run() -> int:
        workers = [RateLimiter(_policy(redis_url, "25/minute")) for _ in range(3)]
        try:
            return sum(await _burst(workers, [("alice", 1)] * 90))
        finally:
            for worker in workers:
                await worker.aclose()

    assert 25 == asyncio.run(run())


def test_several_moving_windows_never_exceed_their_limits(redis_url: str) -> None:
    """A per-key window and a per-endpoint window shared by four keys, hit concurrently by
    two workers: neither window holds more than its limit, and each holds at least the
    rows admitted through it (a lost race may leave rows spent, never missing)."""

    async def run() -> tuple[list[int], dict[str, int], int]:
        policy = _policy(redis_url, "12/minute", endpoints={"predict": "30/minute"})
        workers = [RateLimiter(policy), RateLimiter(policy)]
        spends = [(f"k{i % 4}", 1 + i % 2) for i in range(120)]
        try:
            admitted = await _burst(workers, spends)
            moving = MovingWindowRateLimiter(workers[0].storage)
            per_key = {}
            for k in ("k0", "k1", "k2", "k3"):
                stats = await moving.get_window_stats(
                    parse("12/minute"), "invguard", "moving-window", "principal", k
                )
                per_key[k] = 12 - stats.remaining
            endpoint = await moving.get_window_stats(
                parse("30/minute"), "invguard", "moving-window", "endpoint", "predict"
            )
            return admitted, per_key, 30 - endpoint.remaining
        finally:
            for worker in workers:
                await worker.aclose()

    admitted, per_key, endpoint_used = asyncio.run(run())
    assert sum(admitted) <= endpoint_used <= 30
    for i, k in enumerate(("k0", "k1", "k2", "k3")):
        admitted_k = sum(admitted[j] for j in range(i, 120, 4))
        assert admitted_k <= per_key[k] <= 12


def test_a_refund_never_starts_the_next_window_below_zero(redis_url: str) -> None:
    """A fixed window that expired before its rows came back is left alone: limits' incr
    by a negative amount would otherwise create the next window at -rows."""

    async def run() -> tuple[int, int]:
        limiter = RateLimiter(_policy(redis_url, "1000/day"))
        try:
            await limiter.spend(_ctx("refunded"), 2)
            (day,) = limiter.windows(_ctx("refunded"))
            await limiter.storage.clear(day.key)  # the window ends
            await limiter._refund([day], 5)
            after_refund = await limiter.storage.get(day.key)
            await limiter.spend(_ctx("refunded"), 3)
            return after_refund, await limiter.storage.get(day.key)
        finally:
            await limiter.aclose()

    assert (0, 3) == asyncio.run(run())  # the next window starts at zero, not at -5
