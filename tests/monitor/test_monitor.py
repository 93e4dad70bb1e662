"""The query monitor: probing is caught, benign traffic and retries are not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from bento_invguard import Blocked, Policy, Profile
from bento_invguard.context import QueryContext
from bento_invguard.monitor import History, Monitor, run_without_io
from bento_invguard.monitor.fingerprint import Fingerprinter, hamming, row_digests

from ..conftest import digits_module

model_mod: Any = digits_module("model")
X_TRAIN, X_TEST, Y_TRAIN, _ = model_mod.load_split()
MODEL = model_mod.SoftmaxModel(*model_mod.fit_weights(X_TRAIN, Y_TRAIN))
#: The monitor standardises rows with the reference profile, as the example's policy does.
PROFILE = Profile.fit(X_TRAIN)


def policy(**monitor: Any) -> Policy:
    return Policy.model_validate(
        {"tiers": {"public": {}}, "input": {"shape": [64], "min": 0, "max": 16}, "monitor": monitor}
    )


def ask(mon: Monitor, principal: str, rows: np.ndarray) -> QueryContext:
    """One query through the monitor, as the guard runs it (block check, then assess)."""
    ctx = QueryContext(endpoint="predict", principal=principal, tier_name="public")
    run_without_io(mon.check_block(ctx))
    ctx.input = rows
    ctx.scores = MODEL.predict_proba(rows)
    run_without_io(mon.assess(ctx))
    return ctx


def finite_differences(n: int, seed: int = 0) -> list[np.ndarray]:
    """Gradient estimation around a slowly moving guess: the inversion attacker's stream."""
    rng = np.random.default_rng(seed)
    guess, out = np.full(64, 4.0), []
    while len(out) < n:
        j = rng.integers(64)
        e = np.zeros(64)
        e[j] = 0.5
        out += [np.clip(guess + e, 0, 16)[None, :], np.clip(guess - e, 0, 16)[None, :]]
        guess = np.clip(guess + rng.normal(0, 0.2, 64), 0, 16)
    return out[:n]


def queries_until_blocked(mon: Monitor, principal: str, stream: list[np.ndarray]) -> int | None:
    for i, rows in enumerate(stream, start=1):
        try:
            ask(mon, principal, rows)
        except Blocked:
            return i
    return None


def test_fingerprints_separate_near_from_far() -> None:
    """A small step keeps the SimHash close; a different digit is far."""
    fp = Fingerprinter(64, np.full(64, 8.0), np.full(64, 8.0))
    x = X_TEST[0]
    step = x.copy()
    step[10] += 0.5
    sigs = fp(np.stack([x, step, X_TEST[1]]))
    assert hamming(sigs[:1], sigs[1])[0] <= 4
    assert hamming(sigs[:1], sigs[2])[0] > 8
    assert row_digests(x[None, :])[0] == row_digests(x.copy()[None, :])[0]


def test_gradient_estimation_is_blocked_quickly() -> None:
    """The inversion stream is blocked well within 100 queries; the block then holds."""
    mon = Monitor(policy(), PROFILE)
    n = queries_until_blocked(mon, "attacker", finite_differences(200))
    assert n is not None and n <= 50
    with pytest.raises(Blocked) as info:
        ask(mon, "attacker", X_TEST[:1])
    assert int(info.value.headers["Retry-After"]) > 0
    assert "blocked" == info.value.reason


def test_benign_traffic_and_exact_retries_are_not_flagged() -> None:
    """Held-out digits in random order with retries raise no flag; a retry is one query."""
    mon = Monitor(policy(), PROFILE)
    rng = np.random.default_rng(3)
    for principal in ("alice", "bob"):
        order = rng.permutation(len(X_TEST))
        for i in order[:300]:
            ctx = ask(mon, principal, X_TEST[i : i + 1])
            assert not ctx.flagged, ctx.risk_reasons
    hammer = Monitor(policy(), PROFILE)
    for _ in range(200):
        ctx = ask(hammer, "retrier", X_TEST[:1])
    assert 0.0 == ctx.risk
    history = run_without_io(hammer.store.load(hammer.key(ctx)))
    assert history is not None and 1 == history.count


def test_fifty_near_duplicates_in_one_batch_are_caught() -> None:
    """The monitor looks at every row of a batched request."""
    mon = Monitor(policy(), PROFILE)
    batch = np.vstack(finite_differences(50, seed=5))
    with pytest.raises(Blocked):
        ask(mon, "batcher", batch)


def test_degrade_without_block() -> None:
    """With blocking off, a risky principal is degraded and flagged instead."""
    mon = Monitor(policy(actions={"block": False}), PROFILE)
    ctx = None
    for rows in finite_differences(60):
        ctx = ask(mon, "probe", rows)
    assert ctx is not None and ctx.degraded and ctx.flagged
    assert any(d.outcome == "degrade" for d in ctx.decisions)
    assert ctx.risk >= 0.85


def test_distributed_probing_raises_a_global_signal() -> None:
    """Near-duplicates of one point from several keys raise the distributed signal."""
    mon = Monitor(policy(min_queries=1000, distributed_min_principals=3), PROFILE)
    stream = finite_differences(12, seed=9)
    reasons: list[str] = []
    for k, rows in enumerate(stream):
        reasons = ask(mon, f"key{k % 4}", rows).risk_reasons
    assert any(r.startswith("distributed=") for r in reasons)


def test_state_is_per_model_version() -> None:
    """A block under one model version does not carry over to a retrained model."""
    version = ["v1"]
    mon = Monitor(policy(), PROFILE, model_version=lambda: version[0])
    assert queries_until_blocked(mon, "attacker", finite_differences(100)) is not None
    version[0] = "v2"
    ask(mon, "attacker", X_TEST[:1])  # not blocked: a fresh baseline


def test_memory_is_bounded_by_max_principals() -> None:
    """No more than max_principals histories are kept."""
    mon = Monitor(policy(max_principals=10), PROFILE)
    for p in range(50):
        ask(mon, f"p{p}", X_TEST[p : p + 1])
    assert len(mon.store.histories) <= 10  # type: ignore[attr-defined]


def test_history_round_trips_through_bytes() -> None:
    """The Redis encoding of a history is lossless (and pickle-free)."""
    h = History(16)
    for i in range(20):
        h.push(np.uint64(i * 7919), np.uint64(i), i % 3 == 0, i % 2 == 0, float(i))
    back = History.from_bytes(h.to_bytes(), 16)
    assert (h.sigs == back.sigs).all() and (h.near == back.near).all()
    assert (h.count, h.filled, h.last_seen) == (back.count, back.filled, back.last_seen)
    assert 0 == History.from_bytes(h.to_bytes(), 32).count  # window changed: fresh


def test_blocks_can_be_listed_and_cleared() -> None:
    """An operator lists blocks with their reason and clears one."""
    mon = Monitor(policy(), PROFILE)
    queries_until_blocked(mon, "attacker", finite_differences(100))
    blocks = run_without_io(mon.blocks())
    assert ["default:attacker"] == [b["principal"] for b in blocks]
    assert "near_duplicate" in blocks[0]["reason"]
    assert run_without_io(mon.unblock("default:attacker"))
    ask(mon, "attacker", X_TEST[:1])


@pytest.mark.redis
def test_redis_blocks_are_seen_by_every_worker(redis_url: str) -> None:
    """Two monitors on one Redis (two workers): a block by one is enforced by the other."""

    async def scenario() -> tuple[int | None, str]:
        p = policy().model_copy(update={"storage": redis_url})
        worker_a, worker_b = Monitor(p, PROFILE), Monitor(p, PROFILE)
        blocked_at = None
        for i, rows in enumerate(finite_differences(100), start=1):
            worker = worker_a if i % 2 else worker_b  # alternate, like a load balancer
            ctx = QueryContext(endpoint="predict", principal="attacker", tier_name="public")
            try:
                await worker.check_block(ctx)
                ctx.input, ctx.scores = rows, MODEL.predict_proba(rows)
                await worker.assess(ctx)
            except Blocked:
                blocked_at = i
                break
        ctx = QueryContext(endpoint="predict", principal="attacker", tier_name="public")
        try:
            await worker_a.check_block(ctx)
            await worker_b.check_block(ctx)
            outcome = "served"
        except Blocked as exc:
            outcome = exc.reason
        listed = json.dumps(await worker_b.blocks())
        await worker_a.aclose()
        await worker_b.aclose()
        assert "attacker" in listed
        return blocked_at, outcome

    blocked_at, outcome = asyncio.run(scenario())
    assert blocked_at is not None and blocked_at <= 60
    assert "blocked" == outcome
