"""The Redis global window (one string used as a ring) holds what the in-process one holds."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from bento_invguard import Policy
from bento_invguard.monitor.store import GLOBAL_WINDOW, MemoryStore, RedisStore

pytestmark = pytest.mark.redis


def _policy(storage: str) -> Policy:
    return Policy.model_validate({"tiers": {"public": {}}, "storage": storage})


def _rows(recent: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[tuple[int, int, int]]:
    return sorted(zip(*(column.tolist() for column in recent), strict=True))


def test_ring_keeps_the_last_window_of_rows_like_the_memory_store(redis_url: str) -> None:
    """Batches of 1 to 3,000 rows, past the window and around it: the same rows as in memory."""
    rng = np.random.default_rng(5)

    async def run() -> list[Any]:
        redis_store, memory = RedisStore(_policy(redis_url)), MemoryStore(_policy("memory://"))
        seen = []
        try:
            assert _rows(await redis_store.global_recent()) == []  # nothing yet
            for size in (1, 5, 50, 700, 1, 2047, 3000, 13):
                sigs = rng.integers(0, 2**64, size, dtype=np.uint64)
                digests = rng.integers(0, 2**64, size, dtype=np.uint64)
                who = np.uint64(rng.integers(0, 2**64, dtype=np.uint64))
                await redis_store.global_push(sigs, digests, who)
                await memory.global_push(sigs, digests, who)
                got = await redis_store.global_recent()
                assert all(column.dtype == np.uint64 for column in got)
                seen.append((_rows(got), _rows(await memory.global_recent())))
        finally:
            await redis_store.aclose()
        return seen

    for got, expected in asyncio.run(run()):
        assert got == expected
        assert len(got) <= GLOBAL_WINDOW
    assert len(got) == GLOBAL_WINDOW


def test_ring_keys_expire_with_the_monitor_state(redis_url: str) -> None:
    async def run() -> list[int]:
        store = RedisStore(_policy(redis_url))
        try:
            one = np.array([1], dtype=np.uint64)
            await store.global_push(one, one, np.uint64(2))
            keys = [k async for k in store.client.scan_iter(match="invguard:mon:*")]
            return [await store.client.ttl(k) for k in keys]
        finally:
            await store.aclose()

    ttls = asyncio.run(run())
    assert len(ttls) == 2 and all(0 < t <= _policy("memory://").monitor.state_ttl for t in ttls)


def test_distributed_probing_is_seen_across_workers_on_redis(redis_url: str) -> None:
    """Near-duplicates from several keys, spread over two workers, raise the distributed signal."""
    from bento_invguard.context import QueryContext
    from bento_invguard.monitor import Monitor

    from .test_monitor import MODEL, PROFILE, finite_differences, policy

    async def run() -> list[str]:
        p = policy(min_queries=1000, distributed_min_principals=3).model_copy(
            update={"storage": redis_url}
        )
        workers = [Monitor(p, PROFILE), Monitor(p, PROFILE)]
        reasons: list[str] = []
        try:
            for k, rows in enumerate(finite_differences(12, seed=9)):
                ctx = QueryContext(endpoint="predict", principal=f"key{k % 4}", tier_name="public")
                ctx.input, ctx.scores = rows, MODEL.predict_proba(rows)
                await workers[k % 2].assess(ctx)
                reasons = ctx.risk_reasons
        finally:
            for worker in workers:
                await worker.aclose()
        return reasons

    assert any(r.startswith("distributed=") for r in asyncio.run(run()))


def test_concurrent_queries_of_one_key_all_enter_its_history(redis_url: str) -> None:
    """No lost updates: of 60 concurrent one-row queries of one key, over two workers on
    Redis, every one the monitor let through is in the key's history; the others were
    refused (503, fail closed), never answered uncounted. (A read-modify-write without a
    check kept 1 of the 60, so sending in parallel would have slowed detection down by
    the number of queries in flight.)"""
    from bento_invguard.context import QueryContext
    from bento_invguard.errors import ServiceUnavailable
    from bento_invguard.monitor import Monitor

    from .test_monitor import MODEL, PROFILE, X_TEST, policy

    def racer() -> QueryContext:
        return QueryContext(endpoint="predict", principal="racer", tier_name="public")

    async def run() -> tuple[int, int, int]:
        base = policy(min_queries=1000)
        p = base.model_copy(
            update={
                "storage": redis_url,
                "rate_limiting": base.rate_limiting.model_copy(update={"timeout": 5.0}),
                "storage_options": {"socket_timeout": 5.0, "socket_connect_timeout": 5.0},
            }
        )
        # 60 writers of one key take turns; on a busy machine that can outlast the
        # default 0.5 s storage timeout (then a 503, which is allowed, but would
        # make the count of answered queries a matter of load).
        workers = [Monitor(p, PROFILE), Monitor(p, PROFILE)]

        async def one(i: int) -> bool:
            ctx = racer()
            rows = X_TEST[i : i + 1]
            try:
                # as the guard runs it: the block check (which reads the history too,
                # so most updates start from a read that others overtake), then assess
                await workers[i % 2].check_block(ctx)
                await asyncio.sleep(0)
                ctx.input, ctx.scores = rows, MODEL.predict_proba(rows)
                await workers[i % 2].assess(ctx)
            except ServiceUnavailable:
                return False
            return True

        try:
            outcomes = await asyncio.gather(*(one(i) for i in range(60)))
            history = await workers[0].store.load(workers[0].key(racer()))
            assert history is not None
            return history.count, sum(outcomes), len(outcomes) - sum(outcomes)
        finally:
            for worker in workers:
                await worker.aclose()

    counted, answered, refused = asyncio.run(run())
    assert answered + refused == 60
    assert answered <= counted <= 60  # every answered query counted (a cancelled one may be too)
    assert answered >= 30, (answered, refused)


def test_the_block_check_reads_the_history_for_assess(redis_url: str) -> None:
    """On Redis the block check reads the key's history in the same round trip; assess
    starts from it (once), and a history written in between is not overwritten."""
    from bento_invguard.context import QueryContext
    from bento_invguard.monitor import Monitor

    from .test_monitor import MODEL, PROFILE, X_TEST, policy

    async def run() -> tuple[Any, Any, int]:
        p = policy(min_queries=1000).model_copy(update={"storage": redis_url})
        mon, other = Monitor(p, PROFILE), Monitor(p, PROFILE)
        try:
            first = QueryContext(endpoint="predict", principal="reader", tier_name="public")
            await mon.check_block(first)
            read_before = first.monitor_read
            # another worker answers a query of the same key meanwhile
            second = QueryContext(endpoint="predict", principal="reader", tier_name="public")
            second.input, second.scores = X_TEST[1:2], MODEL.predict_proba(X_TEST[1:2])
            await other.assess(second)
            first.input, first.scores = X_TEST[:1], MODEL.predict_proba(X_TEST[:1])
            await mon.assess(first)
            history = await mon.store.load(mon.key(first))
            assert history is not None
            return read_before, first.monitor_read, history.count
        finally:
            await mon.aclose()
            await other.aclose()

    read_before, read_after, count = asyncio.run(run())
    assert read_before is not None and read_before[1] is None  # a new key: nothing yet
    assert read_after is None  # used once
    assert count == 2  # the stale read lost the compare-and-set and was redone


def test_contention_is_refused_even_when_storage_errors_fail_open(redis_url: str) -> None:
    """A key whose own parallel queries keep its history changing gets a 503, not answers
    served unmonitored, even under on_storage_error: open (which is for outages)."""
    from bento_invguard.context import QueryContext
    from bento_invguard.errors import ServiceUnavailable
    from bento_invguard.monitor import Monitor
    from bento_invguard.monitor.store import UpdateContention

    from .test_monitor import MODEL, PROFILE, X_TEST, policy

    async def run() -> str:
        p = policy().model_copy(update={"storage": redis_url, "on_storage_error": "open"})
        mon = Monitor(p, PROFILE)

        async def always_overtaken(*args: Any, **kwargs: Any) -> Any:
            raise UpdateContention("the history changed under 16 updates")

        mon.store.update = always_overtaken  # type: ignore[method-assign]
        ctx = QueryContext(endpoint="predict", principal="racer", tier_name="public")
        ctx.input, ctx.scores = X_TEST[:1], MODEL.predict_proba(X_TEST[:1])
        try:
            await mon.assess(ctx)
            return "served"
        except ServiceUnavailable:
            return "refused"
        finally:
            await mon.aclose()

    assert asyncio.run(run()) == "refused"
