"""What one rate-limit spend costs, in process: memory and Redis storage, every strategy.

:func:`measure` drives ``RateLimiter.spend`` (the call a guarded request makes
once) directly on an event loop, without HTTP: microseconds per spend for 200
principals in turn, Redis commands per spend (from Redis' own command
statistics) and bytes per principal (``tracemalloc`` in memory, Redis'
``used_memory`` on Redis), and how a spend grows with one principal's history.
:func:`report` turns the result into markdown tables.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bento_invguard.context import QueryContext
from bento_invguard.policy import Policy
from bento_invguard.ratelimit import RateLimiter

from .serving import RedisServer

LIMIT = "10/second;600/minute;5000/day"
STRATEGIES = ("auto", "moving-window", "fixed-window", "sliding-window-counter")
BIG = "1000000000/day"  # a large daily budget: the window the example's tiers spend most in
PRINCIPALS, ROUNDS = 200, 5


def make_policy(storage: str, strategy: str, limit: str = LIMIT) -> Policy:
    return Policy.model_validate(
        {
            "tiers": {"public": {"output": "label", "rate_limit": limit}},
            "storage": storage,
            "rate_limiting": {"strategy": strategy},
        }
    )


def ctx_for(principal: str) -> QueryContext:
    return QueryContext(endpoint="predict", principal=principal, tier_name="public")


async def time_spends(limiter: RateLimiter, principals: int, rounds: int) -> list[float]:
    """Microseconds per spend of one row, principals in turn."""
    samples: list[float] = []
    for _ in range(rounds):
        for p in range(principals):
            ctx = ctx_for(f"p{p}")
            start = time.perf_counter()
            await limiter.spend(ctx, 1)
            samples.append((time.perf_counter() - start) * 1e6)
    return samples


def redis_counts(port: int) -> tuple[int, int]:
    """Redis' used memory (bytes) and commands served so far."""
    import redis

    client = redis.Redis(port=port)
    calls = sum(int(v["calls"]) for v in client.info("commandstats").values())
    return int(client.info("memory")["used_memory"]), calls


async def memory_per_principal(strategy: str, principals: int) -> float:
    limiter = RateLimiter(make_policy("memory://", strategy))
    await limiter.spend(ctx_for("warmup"), 1)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for p in range(principals):
        await limiter.spend(ctx_for(f"m{p}"), 1)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    await limiter.aclose()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / principals


async def bench_storage(uri: str, strategy: str, port: int | None) -> dict[str, float]:
    limiter = RateLimiter(make_policy(uri, strategy))
    await time_spends(limiter, 20, 1)  # warm up connections and code paths
    calls_before = redis_counts(port)[1] if port else 0
    samples = await time_spends(limiter, PRINCIPALS, ROUNDS)
    result = {
        "spend_median_us": statistics.median(samples),
        "spend_p99_us": statistics.quantiles(samples, n=100)[98],
        "spends": float(len(samples)),
    }
    if port:
        used_before, calls_after = redis_counts(port)
        result["redis_commands_per_spend"] = (calls_after - calls_before) / len(samples)
        for p in range(2000):
            await limiter.spend(ctx_for(f"mem{p}"), 1)
        result["bytes_per_principal"] = (redis_counts(port)[0] - used_before) / 2000
    else:
        result["bytes_per_principal"] = await memory_per_principal(strategy, 5000)
    await limiter.aclose()
    return result


async def growth(strategy: str, prior: int) -> float:
    """Median us per spend for one principal that already spent ``prior`` rows."""
    limiter = RateLimiter(make_policy("memory://", strategy, BIG))
    ctx = ctx_for("heavy")
    for _ in range(prior):
        await limiter.spend(ctx, 1)
    samples = []
    for _ in range(300):
        start = time.perf_counter()
        await limiter.spend(ctx, 1)
        samples.append((time.perf_counter() - start) * 1e6)
    await limiter.aclose()
    return statistics.median(samples)


async def _measure(quick: bool) -> dict[str, Any]:
    priors = (0, 20_000) if quick else (0, 20_000, 100_000)
    results: dict[str, Any] = {"limit": LIMIT, "storages": {}}
    results["growth"] = {
        s: {str(n): await growth(s, n) for n in priors} for s in ("auto", "moving-window")
    }
    for strategy in STRATEGIES:
        results["storages"][f"memory/{strategy}"] = await bench_storage("memory://", strategy, None)
    if shutil.which("redis-server") is None:
        results["redis"] = "redis-server not found: Redis figures skipped"
        return results
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="invguard-spend-")))
    try:
        for strategy in STRATEGIES:
            results["storages"][f"redis/{strategy}"] = await bench_storage(
                redis.url, strategy, redis.port
            )
    finally:
        redis.stop()
    return results


def measure(quick: bool = False) -> dict[str, Any]:
    """Every storage and strategy; Redis ones only where ``redis-server`` is installed."""
    return asyncio.run(_measure(quick))


def report(results: dict[str, Any]) -> str:
    lines = ["spend cost after N prior rows of one principal (memory://, one daily budget):"]
    for name, by_n in results["growth"].items():
        lines.append(f"  {name}: " + ", ".join(f"{n} -> {us:.1f} us" for n, us in by_n.items()))
    lines += [
        f"\nlimit per principal: {results['limit']} (3 windows)\n",
        "| storage / strategy | spend median us | spend p99 us "
        "| Redis commands / spend (in scripts too) | bytes / principal |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["storages"].items():
        commands = r.get("redis_commands_per_spend")
        lines.append(
            f"| {name} | {r['spend_median_us']:.1f} | {r['spend_p99_us']:.1f} "
            f"| {'-' if commands is None else f'{commands:.1f}'} | {r['bytes_per_principal']:.0f} |"
        )
    if "redis" in results:
        lines.append(f"\n{results['redis']}")
    return "\n".join(lines)
