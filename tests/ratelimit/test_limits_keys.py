"""The keys and counts the limiter writes are what limits' own strategies read."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from bento_invguard import Policy, QueryContext
from bento_invguard.ratelimit import RateLimiter
from bento_invguard.ratelimit.windows import NAMESPACE


def spend_and_read(storage_uri: str) -> tuple[list[int], list[int]]:
    """Spend 3 + 4 rows through the guard, then read the windows with limits' strategies."""
    policy = Policy(tiers={"public": {"rate_limit": "50/minute;100/day"}}, storage=storage_uri)

    async def run() -> tuple[list[int], list[int]]:
        limiter = RateLimiter(policy)
        try:
            for cost in (3, 4):
                ctx = QueryContext(endpoint="predict", principal="alice", tier_name="public")
                await limiter.spend(ctx, cost)
            moving = MovingWindowRateLimiter(limiter.storage)
            fixed = FixedWindowRateLimiter(limiter.storage)
            ours = [
                (
                    await limiter.strategy(w.strategy).get_window_stats(w.item, *w.identifiers)
                ).remaining
                for w in limiter.windows(ctx)
            ]
            theirs = [
                (await moving.get_window_stats(parse("50/minute"), NAMESPACE, "moving-window",
                                               "principal", "alice")).remaining,
                (await fixed.get_window_stats(parse("100/day"), NAMESPACE, "fixed-window",
                                              "principal", "alice")).remaining,
            ]  # fmt: skip
            return ours, theirs
        finally:
            await limiter.aclose()

    return asyncio.run(run())


def test_memory_counts_are_limits_own() -> None:
    """memory://: limits' strategies see the rows the guard spent, under the same keys."""
    ours, theirs = spend_and_read("memory://")
    assert [43, 93] == theirs
    assert theirs == ours


@pytest.mark.redis
def test_redis_counts_are_limits_own(redis_url: str) -> None:
    """redis://: the same, against a real Redis."""
    ours, theirs = spend_and_read(redis_url)
    assert [43, 93] == theirs
    assert theirs == ours
