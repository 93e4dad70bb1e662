"""SweepingMemoryStorage: limits' in-process storage with amortised expiry."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from bento_invguard import Policy
from bento_invguard.ratelimit.memory import SweepingMemoryStorage
from bento_invguard.storage import open_async_storage


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_memory_uri_opens_the_sweeping_storage_and_limits_keeps_its_own() -> None:
    """memory:// gives the guard's storage; limits' own "async+memory" scheme is untouched."""
    from limits.storage import storage_from_string

    policy = Policy(tiers={"public": {}}, storage="memory://")
    assert SweepingMemoryStorage is type(open_async_storage(policy))
    assert MemoryStorage is type(storage_from_string("async+memory://"))


def test_limits_are_exact_and_no_thread_or_task_is_started() -> None:
    """A moving and a fixed window admit exactly their limit, in the loop's own thread.

    (limits' own MemoryStorage fails this: it starts a sweep task after a hit and
    hands each moving-window key to a thread.)
    """
    threads_before = set(threading.enumerate())

    async def run() -> tuple[list[bool], list[bool], int, set[threading.Thread]]:
        storage = SweepingMemoryStorage(sweep_seconds=0.0)  # a sweep step on every call
        moving, fixed = MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage)
        tasks_before = len(asyncio.all_tasks())
        m, f = [], []
        for _ in range(8):
            m.append(await moving.hit(parse("5/minute"), "alice"))
            await asyncio.sleep(0)  # let anything scheduled run
        for _ in range(5):
            f.append(await fixed.hit(parse("3/day"), "alice"))
            await asyncio.sleep(0)
        new_tasks = len(asyncio.all_tasks()) - tasks_before
        return m, f, new_tasks, set(threading.enumerate()) - threads_before

    moving, fixed, new_tasks, new_threads = asyncio.run(run())
    assert [True] * 5 + [False] * 3 == moving
    assert [True] * 3 + [False] * 2 == fixed
    assert 0 == new_tasks
    assert set() == new_threads  # threads of earlier tests may end; none may start


def test_a_moving_window_keeps_at_most_its_limit_of_entries() -> None:
    """Entries past the limit can never be read again, so they are not kept."""

    async def run() -> SweepingMemoryStorage:
        storage = SweepingMemoryStorage()
        limiter = MovingWindowRateLimiter(storage)
        for _ in range(50):
            await limiter.hit(parse("1000/minute"), "bob", cost=40)
        return storage

    storage = asyncio.run(run())
    (events,) = storage.events.values()
    assert 1000 == len(events)


def test_the_sweep_drops_expired_state_a_few_keys_per_step() -> None:
    """Each sweep step examines at most sweep_keys keys; a round frees every expired key."""
    clock = Clock()

    async def run() -> SweepingMemoryStorage:
        storage = SweepingMemoryStorage(sweep_seconds=1.0, sweep_keys=10, clock=clock)
        moving, fixed = MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage)
        for n in range(30):
            await moving.hit(parse("5/second"), f"m{n}")
            await fixed.hit(parse("5/second"), f"f{n}")
        return storage

    storage = asyncio.run(run())
    assert (30, 30) == (len(storage.events), len(storage.storage))
    later = time.time() + 10
    assert 10 == storage.sweep(10, now=later)
    assert 50 == len(storage.events) + len(storage.storage)
    for _ in range(5):  # 60 keys in all, 10 a step
        storage.sweep(10, now=later)
    assert {} == storage.events
    assert 0 == len(storage.storage) + len(storage.expirations) + len(storage.locks)


def test_unexpired_state_survives_a_full_sweep() -> None:
    """Counts still inside their window are kept by the sweep."""

    async def run() -> tuple[SweepingMemoryStorage, MovingWindowRateLimiter]:
        storage = SweepingMemoryStorage()
        limiter = MovingWindowRateLimiter(storage)
        for _ in range(3):
            await limiter.hit(parse("10/hour"), "carol")
        return storage, limiter

    storage, limiter = asyncio.run(run())
    assert 1 == storage.sweep()
    stats = asyncio.run(limiter.get_window_stats(parse("10/hour"), "carol"))
    assert 7 == stats.remaining


@pytest.mark.parametrize("steps", [1, 3])
def test_sweep_steps_follow_the_clock(steps: int) -> None:
    """A sweep step runs only once sweep_seconds have passed since the last one."""
    clock = Clock()

    async def run() -> int:
        storage = SweepingMemoryStorage(sweep_seconds=5.0, sweep_keys=1, clock=clock)
        limiter = MovingWindowRateLimiter(storage)
        swept = 0
        original = storage.sweep

        def counting(max_keys: int | None = None, **kw: float) -> int:
            nonlocal swept
            swept += 1
            return original(max_keys, **kw)

        storage.sweep = counting  # type: ignore[method-assign]
        for _ in range(steps):
            clock.now += 5.0
            for _ in range(4):
                await limiter.hit(parse("100/second"), "dave")
        return swept

    assert steps == asyncio.run(run())


def test_one_step_hits_match_limits_own_calls() -> None:
    """acquire_and_count / incr_and_expiry do what limits' hit-then-read calls do.

    Two storages get the same hits with random amounts: limits' own
    ``MemoryStorage`` through its calls (acquire_entry then get_moving_window,
    incr then get_expiry), and ours through the one-step methods the rate
    limiter uses in process. Every answer, count and window end agrees (ends to
    the clock's jitter). (Ours keeps at most ``limit`` entries per moving
    window, so the lists' lengths may differ; what they count may not.)
    """
    import random

    rng = random.Random(7)

    async def run() -> None:
        ours, theirs = SweepingMemoryStorage(), MemoryStorage()
        for _ in range(400):
            key = f"k{rng.randrange(3)}"
            amount = rng.choice([1, 1, 1, 2, 5])
            if rng.random() < 0.5:
                limit, expiry = rng.choice([(5, 60), (20, 3600), (1, 60)])
                name = f"m-{key}-{limit}"  # a window's key always has the one limit
                ok, start, used = ours.acquire_and_count(name, limit, expiry, amount)
                expected = await theirs.acquire_entry(name, limit, expiry, amount)
                t_start, t_used = await theirs.get_moving_window(name, limit, expiry)
                assert (ok, used) == (expected, t_used)
                assert abs(start - t_start) < 0.05
            else:
                count, ends = ours.incr_and_expiry(f"f-{key}", 86400, amount)
                t_count = await theirs.incr(f"f-{key}", 86400, amount)
                assert count == t_count
                assert abs(ends - await theirs.get_expiry(f"f-{key}")) < 0.05
        assert dict(ours.storage) == dict(theirs.storage)

    asyncio.run(run())


def test_rate_limiter_status_after_one_step_hits_equals_a_fresh_read() -> None:
    """The RateLimit status the in-process fast path gives is what reading the counts gives."""
    from bento_invguard import QueryContext
    from bento_invguard.errors import RateLimited
    from bento_invguard.ratelimit.limiter import RateLimiter

    policy = Policy(
        tiers={"public": {"rate_limit": "45/second;50/minute;1000/day"}}, storage="memory://"
    )

    async def run() -> int:
        limiter = RateLimiter(policy)
        compared = 0
        for i in range(60):
            ctx = QueryContext(endpoint="predict")
            ctx.principal, ctx.tier_name = f"p{i % 2}", "public"
            try:
                await limiter.spend(ctx, 1 + i % 3)
            except RateLimited:
                continue
            windows = limiter.windows(ctx)
            fresh = await limiter._read_status(windows, windows[0].identifiers)
            assert ctx.rate is not None and isinstance(ctx.rate, type(fresh))
            assert (ctx.rate.limit, ctx.rate.remaining) == (fresh.limit, fresh.remaining)
            assert abs(ctx.rate.reset_after - fresh.reset_after) <= 1
            compared += 1
        return compared

    assert asyncio.run(run()) > 20
