"""Memory and Redis hold the same view: same verdicts, same silent answers, shared by workers."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from bento_invguard import Profile
from bento_invguard.reference import Thresholds
from bento_invguard.view import MemoryViewStore, RedisViewStore, SharedView
from bento_invguard.view.entries import ENTRY, TABLES, table_rows

from .conftest import X_TEST, Clock, ask_async, chain

pytestmark = pytest.mark.redis


def redis_view(
    url: str, thresholds: Thresholds, profile: Profile, clock: Clock, size: int, ttl: int = 3600
) -> SharedView:
    """A view in Redis, as a worker opens it (its own client)."""
    import redis.asyncio

    def store() -> RedisViewStore:
        return RedisViewStore(redis.asyncio.Redis.from_url(url), "digits:v1", size, ttl)

    return SharedView(
        thresholds, size=size, ttl=ttl, center=np.asarray(profile.mean), store=store, clock=clock
    )


def memory_view(thresholds: Thresholds, profile: Profile, clock: Clock, size: int) -> SharedView:
    return SharedView(thresholds, size=size, ttl=3600, center=np.asarray(profile.mean), clock=clock)


def requests() -> list[tuple[str, np.ndarray, list[int]]]:
    """A mixed stream: two chains over rotating keys, natural digits, repeats, batches,
    more queries than the view holds (64), one second apart."""
    rng = np.random.default_rng(7)
    walk, other = chain(30, seed=1), chain(12, start=X_TEST[5], seed=2)
    stream: list[tuple[str, np.ndarray]] = []
    for i in range(30):
        stream.append((f"k{i}", walk[i : i + 1]))
        if i % 3 == 0:
            stream.append((f"u{i % 5}", X_TEST[10 + i : 11 + i]))
        if i % 7 == 0:
            stream.append(("retry", walk[max(0, i - 2) : i + 1]))  # repeats and a new row
    stream.append(("batch", other))
    stream.append(("batch", np.vstack([other[:3], X_TEST[100:140]])))
    return [(who, rows, rng.integers(0, 10, len(rows)).tolist()) for who, rows in stream]


def summary(
    judgement: Any, answers: np.ndarray
) -> tuple[list[bool], list[bool], list[int], list[int]]:
    return (
        judgement.probing.tolist(),
        judgement.repeat.tolist(),
        judgement.neighbours.tolist(),
        answers.tolist(),
    )


def test_memory_and_redis_give_the_same_verdicts_and_answers(
    redis_url: str, thresholds: Thresholds, profile: Profile
) -> None:
    """The same stream through a memory view and a Redis view of 64 queries: every row's
    verdict, repeat flag, neighbour count and (silent) answer agree."""

    async def run() -> tuple[list[Any], list[Any]]:
        clock = Clock()
        memory, shared = (
            memory_view(thresholds, profile, clock, 64),
            redis_view(redis_url, thresholds, profile, clock, 64),
        )
        got_memory, got_redis = [], []
        try:
            for who, rows, classes in requests():
                clock.now += 1
                got_memory.append(summary(*await ask_async(memory, who, rows, classes)))
                got_redis.append(summary(*await ask_async(shared, who, rows, classes)))
        finally:
            await shared.aclose()
        return got_memory, got_redis

    expected, actual = asyncio.run(run())
    assert expected == actual
    assert any(any(probing) for probing, *_ in expected)  # the stream did probe
    assert any(any(repeat) for _, repeat, *_ in expected)


def test_the_stores_hold_the_same_records(redis_url: str) -> None:
    """Kept records and their table rows read back alike, past the ring's end (seq wraps
    the ring), with the ring bounded at ``size`` records."""
    rng = np.random.default_rng(3)
    size = 64
    rows_per_table = table_rows(size)

    async def run() -> list[tuple[Any, Any]]:
        import redis.asyncio

        memory = MemoryViewStore(size, rows_per_table)
        shared = RedisViewStore(redis.asyncio.Redis.from_url(redis_url), "v", size, 60)
        out = []
        try:
            for count in (1, 5, 40, 70, 3):
                records = np.zeros(count, dtype=ENTRY)
                records["time"] = 1_700_000_000
                records["who"] = rng.integers(0, 2**32, count, dtype=np.uint32)
                records["answer"] = rng.integers(0, 10, count)
                records["digest"] = rng.integers(0, 2**63, count, dtype=np.uint64)
                records["fingerprint"] = rng.standard_normal((count, 24))
                table = rng.integers(0, 2, (count, TABLES))  # few rows: buckets overflow too
                await memory.keep(records, table)
                await shared.keep(records, table)
                probe = rng.integers(0, 2, (4, TABLES))
                out.append((memory.fetch_now(probe), await shared.fetch(probe)))
            assert size * ENTRY.itemsize == await shared.client.strlen(shared.keys[1])
            ttls = [await shared.client.ttl(k) for k in shared.keys]
            assert all(0 < t <= 60 for t in ttls), ttls
        finally:
            await shared.aclose()
        return out

    for (m_current, m_records, m_owner), (r_current, r_records, r_owner) in asyncio.run(run()):
        assert m_current == r_current
        expected = sorted(zip(m_owner.tolist(), [r.tobytes() for r in m_records], strict=True))
        actual = sorted(zip(r_owner.tolist(), [r.tobytes() for r in r_records], strict=True))
        assert expected == actual


def test_two_workers_on_one_redis_share_the_view(
    redis_url: str, thresholds: Thresholds, profile: Profile
) -> None:
    """A chain split between two workers, a new key per step, is caught from the
    cluster_size-th step on as if one worker had seen it all."""

    async def run() -> list[bool]:
        clock = Clock()
        workers = [
            redis_view(redis_url, thresholds, profile, clock, 4096),
            redis_view(redis_url, thresholds, profile, clock, 4096),
        ]
        verdicts = []
        try:
            for i, row in enumerate(chain(12)):
                judgement, _ = await ask_async(workers[i % 2], f"key-{i}", row[None, :])
                verdicts.append(bool(judgement.probing[0]))
        finally:
            for worker in workers:
                await worker.aclose()
        return verdicts

    c = thresholds.cluster_size
    assert [False] * c + [True] * (12 - c) == asyncio.run(run())
