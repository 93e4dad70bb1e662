"""RateLimiter in process: spends, whole refusals, and what a lost race leaves behind."""

from __future__ import annotations

import asyncio
import time

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from bento_invguard import Policy, QueryContext
from bento_invguard.errors import RateLimited
from bento_invguard.ratelimit import LimitStatus, RateLimiter

ALICE = ("invguard", "moving-window", "principal", "alice")
ALICE_DAY = ("invguard", "fixed-window", "principal", "alice")


def _ctx(principal: str = "alice") -> QueryContext:
    return QueryContext(endpoint="predict", principal=principal, tier_name="public")


def _limiter(limits: str, storage: MemoryStorage | None = None, **settings: object) -> RateLimiter:
    policy = Policy(tiers={"public": {"rate_limit": limits}}, rate_limiting=settings)
    return RateLimiter(policy, storage=storage)


class StaleReads(MemoryStorage):
    """A storage whose reads always find the windows empty: as if every other worker's
    spend landed between this worker's read and its hit (the race of two steps)."""

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        return time.time(), 0

    async def get(self, key: str) -> int:
        return 0


async def _left(storage: MemoryStorage, limit: str, identifiers: tuple[str, ...]) -> int:
    strategy = (MovingWindowRateLimiter if "moving" in identifiers[1] else FixedWindowRateLimiter)(
        storage
    )
    return (await strategy.get_window_stats(parse(limit), *identifiers)).remaining


def test_a_spend_reports_the_tightest_window_and_writes_only_its_decision() -> None:
    """The status is the window with least room; ctx.spent and ctx.rate are the caller's."""

    async def run() -> tuple[LimitStatus | None, QueryContext]:
        limiter = _limiter("10/minute;12/day")
        ctx = _ctx()
        await limiter.spend(ctx, 3)
        ctx = _ctx()
        status = await limiter.spend(ctx, 4)
        await limiter.aclose()
        return status, ctx

    status, ctx = asyncio.run(run())
    assert LimitStatus(10, 3, 60) == status  # 10 - 7 left of the minute; 12 - 7 of the day
    assert ctx.rate is None
    assert ("rate_limit", "spent", "4") in [(d.control, d.outcome, d.detail) for d in ctx.decisions]


def test_a_refused_request_spends_nothing_in_any_window() -> None:
    """A request that one window has no room for leaves every window as it was."""

    async def run() -> tuple[str, list[int]]:
        storage = MemoryStorage()
        limiter = _limiter("5/minute;100/hour;1000/day", storage)
        await limiter.spend(_ctx(), 4)
        with pytest.raises(RateLimited) as refused:
            await limiter.spend(_ctx(), 2)
        left = [
            await _left(storage, "5/minute", ALICE),
            await _left(storage, "100/hour", ALICE),
            await _left(storage, "1000/day", ALICE_DAY),
        ]
        return refused.value.detail, left

    detail, left = asyncio.run(run())
    assert "limit 5 per 1 minute reached for this key; 1 left, this request needs 2" == detail
    assert [1, 96, 996] == left


def test_rejection_is_recorded_on_the_context() -> None:
    """A refusal goes through ctx.reject: the query's outcome names the control."""

    async def run() -> QueryContext:
        limiter = _limiter("1/minute")
        await limiter.spend(_ctx(), 1)
        ctx = _ctx()
        with pytest.raises(RateLimited):
            await limiter.spend(ctx, 1)
        return ctx

    ctx = asyncio.run(run())
    assert isinstance(ctx.rejection, RateLimited)
    assert ("rate_limit", "reject", "rate_limited") in [
        (d.control, d.outcome, d.detail) for d in ctx.decisions
    ]


def test_a_lost_race_gives_fixed_windows_their_rows_back() -> None:
    """The read said there was room, the moving window's atomic hit says no: the day
    budget (hit first, a counter) gets the rows back, and the request is refused."""

    async def run() -> list[int]:
        storage = StaleReads()
        limiter = _limiter("5/minute;1000/day", storage)
        for _ in range(5):
            await limiter.spend(_ctx(), 1)
        with pytest.raises(RateLimited):
            await limiter.spend(_ctx(), 3)
        return [
            len(storage.events[parse("5/minute").key_for(*ALICE)]),
            storage.storage[parse("1000/day").key_for(*ALICE_DAY)],
        ]

    assert [5, 5] == asyncio.run(run())


def test_the_window_with_least_room_is_hit_first() -> None:
    """Of two moving windows, the tighter one is hit first, so when it refuses the other
    has taken nothing (its entries could not be given back)."""

    async def run() -> list[int]:
        storage = StaleReads()
        limiter = _limiter("5/minute;100/hour", storage)
        for _ in range(5):
            await limiter.spend(_ctx(), 1)
        with pytest.raises(RateLimited):
            await limiter.spend(_ctx(), 1)
        return [len(storage.events[parse(lim).key_for(*ALICE)]) for lim in ("5/minute", "100/hour")]

    assert [5, 5] == asyncio.run(run())


def test_the_residual_race_only_ever_costs_the_caller() -> None:
    """Two moving windows whose room both vanished after the read: the one hit first keeps
    the rows (no public call removes a moving window's entries). The caller loses room,
    no window ever holds more than its limit."""

    async def run() -> list[int]:
        storage = StaleReads()
        limiter = _limiter("5/minute;100/hour", storage)
        minute, hour = (parse(lim).key_for(*ALICE) for lim in ("5/minute", "100/hour"))
        # the hour window is full by other means: 100 entries, the minute one empty
        assert await storage.acquire_entry(hour, 100, 3600, amount=100)
        with pytest.raises(RateLimited):
            await limiter.spend(_ctx(), 1)  # stale reads: the minute looks tighter (4/5 vs 99/100)
        return [len(storage.events[minute]), len(storage.events[hour])]

    assert [1, 100] == asyncio.run(run())


@pytest.mark.parametrize(
    "strategy", ["auto", "moving-window", "fixed-window", "sliding-window-counter"]
)
def test_every_strategy_admits_exactly_the_limit(strategy: str) -> None:
    """Concurrent spends of mixed sizes never put more than the limit through."""

    async def run() -> int:
        limiter = _limiter("50/minute;80/day", strategy=strategy)
        admitted = 0

        async def one(rows: int) -> None:
            nonlocal admitted
            try:
                await limiter.spend(_ctx(), rows)
                admitted += rows
            except RateLimited:
                pass

        await asyncio.gather(*(one(1 + i % 4) for i in range(60)))
        await limiter.aclose()
        return admitted

    assert 50 == asyncio.run(run())  # 1+2+3+4... fills the minute exactly at 50


def test_no_window_no_storage() -> None:
    """A query no limit applies to returns None without opening the storage."""

    async def run() -> LimitStatus | None:
        limiter = _limiter("5/minute")
        other = QueryContext(endpoint="predict", principal="bob", tier_name="unlimited")
        return await limiter.spend(other, 3)

    assert asyncio.run(run()) is None


def test_memory_keeps_only_live_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """limits' own sweep drops the windows of callers gone quiet: after two days only
    the latest caller's windows are left in memory (the clock is moved, not waited for)."""
    now = [time.time()]
    monkeypatch.setattr(time, "time", lambda: now[0])

    async def run() -> tuple[int, int, int, int]:
        storage = MemoryStorage()
        limiter = _limiter("5/second;10/minute;1000/day", storage)
        for i in range(200):
            await limiter.spend(_ctx(f"p{i}"), 2)
        busy = (len(storage.events), len(storage.storage))
        now[0] += 2 * 86400
        await limiter.spend(_ctx("late"), 1)
        while storage.timer is not None and not storage.timer.done():
            await storage.timer  # the sweep that call started
        await limiter.spend(_ctx("late"), 1)  # and the sweep it starts sees the old ones gone
        while storage.timer is not None and not storage.timer.done():
            await storage.timer
        return (*busy, len(storage.events), len(storage.storage))

    events, counters, events_after, counters_after = asyncio.run(run())
    assert (400, 200) == (events, counters)  # two moving windows and a day budget each
    assert (2, 1) == (events_after, counters_after)
