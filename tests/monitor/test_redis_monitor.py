"""The monitor on Redis: blocks and histories shared by every worker, no update lost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from bento_invguard import Blocked, Policy
from bento_invguard.context import QueryContext
from bento_invguard.errors import ServiceUnavailable
from bento_invguard.monitor import Monitor
from bento_invguard.monitor.store import UpdateContention

from .conftest import CONFIDENT, MODEL, X_TEST, context, policy

pytestmark = pytest.mark.redis


def on_redis(url: str, **monitor: Any) -> Policy:
    return policy(**monitor).model_copy(update={"storage": url})


async def assess(mon: Monitor, ctx: QueryContext, scores: np.ndarray, probing: bool) -> None:
    ctx.scores = scores
    n = len(scores)
    await mon.assess(ctx, np.full(n, probing), np.zeros(n, dtype=bool))


def test_redis_blocks_are_seen_by_every_worker(redis_url: str) -> None:
    """Two monitors on one Redis (two workers) take turns with a probing key: the block
    comes as soon as with one worker, and both enforce it and list it."""

    async def scenario() -> tuple[int | None, list[str], str]:
        p = on_redis(redis_url)
        workers = [Monitor(p), Monitor(p)]
        blocked_at = None
        try:
            for i in range(1, 61):
                worker = workers[i % 2]  # alternate, like a load balancer
                ctx = context("attacker")
                try:
                    await worker.check_block(ctx)
                    await assess(worker, ctx, CONFIDENT, probing=i > 12)
                except Blocked:
                    blocked_at = i
                    break
            outcomes = []
            for worker in workers:
                try:
                    await worker.check_block(context("attacker"))
                    outcomes.append("served")
                except Blocked as exc:
                    outcomes.append(exc.reason)
            listed = json.dumps(await workers[0].blocks())
        finally:
            for worker in workers:
                await worker.aclose()
        return blocked_at, outcomes, listed

    blocked_at, outcomes, listed = asyncio.run(scenario())
    assert 48 == blocked_at  # 36 probing of 48, as in one process
    assert ["blocked", "blocked"] == outcomes
    assert "default:attacker" in listed


def test_concurrent_queries_of_one_key_all_enter_its_history(redis_url: str) -> None:
    """No lost updates: of 60 concurrent one-row queries of one key, over two workers on
    Redis, every one the monitor let through is in the key's history; the others were
    refused (503, fail closed), never answered uncounted. (A read-modify-write without a
    check kept 1 of the 60, so sending in parallel would have slowed detection down by
    the number of queries in flight.)"""

    async def run() -> tuple[int, int, int]:
        base = on_redis(redis_url, min_queries=1000)
        p = base.model_copy(
            update={
                "rate_limiting": base.rate_limiting.model_copy(update={"timeout": 5.0}),
                "storage_options": {"socket_timeout": 5.0, "socket_connect_timeout": 5.0},
            }
        )
        # 60 writers of one key take turns; on a busy machine that can outlast the
        # default 0.5 s storage timeout (then a 503, which is allowed, but would
        # make the count of answered queries a matter of load).
        workers = [Monitor(p), Monitor(p)]

        async def one(i: int) -> bool:
            ctx = context("racer")
            try:
                # as the guard runs it: the block check (which reads the history too,
                # so most updates start from a read that others overtake), then assess
                await workers[i % 2].check_block(ctx)
                await asyncio.sleep(0)
                await assess(workers[i % 2], ctx, MODEL.predict_proba(X_TEST[i : i + 1]), False)
            except ServiceUnavailable:
                return False
            return True

        try:
            outcomes = await asyncio.gather(*(one(i) for i in range(60)))
            history = await workers[0].store.load(workers[0].key(context("racer")))
            assert history is not None
            return history.count, sum(outcomes), len(outcomes) - sum(outcomes)
        finally:
            for worker in workers:
                await worker.aclose()

    counted, answered, refused = asyncio.run(run())
    assert 60 == answered + refused
    assert answered <= counted <= 60  # every answered query counted (a cancelled one may be too)
    assert answered >= 30, (answered, refused)


def test_contention_is_refused_even_when_storage_errors_fail_open(redis_url: str) -> None:
    """A key whose own parallel queries keep its history changing gets a 503, not answers
    served unmonitored, even under on_storage_error: open (which is for outages)."""

    async def run() -> str:
        p = on_redis(redis_url).model_copy(update={"on_storage_error": "open"})
        mon = Monitor(p)

        async def always_overtaken(*args: Any, **kwargs: Any) -> Any:
            raise UpdateContention("the history changed under 16 updates")

        mon.store.update = always_overtaken  # type: ignore[method-assign]
        try:
            await assess(mon, context("racer"), MODEL.predict_proba(X_TEST[:1]), False)
            return "served"
        except ServiceUnavailable:
            return "refused"
        finally:
            await mon.aclose()

    assert "refused" == asyncio.run(run())


def test_refused_probing_rows_on_one_worker_block_the_key_on_another(redis_url: str) -> None:
    """Rows refused as probing by one worker's view fill the shared history: the other
    worker refuses the key's next request."""

    async def run() -> str:
        p = on_redis(redis_url)
        worker_a, worker_b = Monitor(p), Monitor(p)
        try:
            for _ in range(3):
                await worker_a.observe_refused(context("rotator"), 5, probing=True)
            try:
                await worker_b.check_block(context("rotator"))
                return "served"
            except Blocked as exc:
                return exc.reason
        finally:
            await worker_a.aclose()
            await worker_b.aclose()

    assert "blocked" == asyncio.run(run())
