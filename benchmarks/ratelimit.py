"""Rate-limit cost: microseconds per spend (memory and Redis), Redis commands, memory per principal.

    .venv/bin/python benchmarks/ratelimit.py            # memory, and Redis if redis-server exists

Measures RateLimiter.spend (the call the middleware makes once per request)
directly on an event loop: what it adds to a request, without HTTP noise.
A local redis-server is started on a free loopback port and stopped after.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bento_invguard.context import QueryContext
from bento_invguard.policy import Policy
from bento_invguard.ratelimit import RateLimiter
from bento_invguard.ratelimit.memory import SweepingMemoryStorage

LIMIT = "10/second;600/minute;5000/day"
STRATEGY_NAMES = ("auto", "moving-window", "fixed-window", "sliding-window-counter")
BIG = "1000000000/day"  # a large daily budget: the window the example's tiers spend most in
RESULTS = Path(__file__).resolve().parent / "results"


def make_policy(storage: str, strategy: str) -> Policy:
    return Policy.model_validate(
        {
            "tiers": {"public": {"output": "label", "rate_limit": LIMIT}},
            "storage": storage,
            "rate_limiting": {"strategy": strategy},
        }
    )


def ctx_for(principal: str) -> QueryContext:
    return QueryContext(endpoint="predict", principal=principal, tier_name="public")


async def time_spends(
    limiter: RateLimiter, principals: int, rounds: int
) -> list[tuple[float, float]]:
    """Microseconds per request: the spend before the body plus reading the headers' status.

    The status is read after the spend, concurrently with the model; here it is
    awaited at once, so the figure is an upper bound of what a request waits.
    """
    samples: list[tuple[float, float]] = []
    for _ in range(rounds):
        for p in range(principals):
            ctx = ctx_for(f"p{p}")
            start = time.perf_counter()
            await limiter.spend(ctx, 1)
            spent = time.perf_counter()
            await limiter.status(ctx)
            samples.append(((spent - start) * 1e6, (time.perf_counter() - spent) * 1e6))
    return samples


class CallCounter:
    """Counts calls to the storage methods that each cost one round trip.

    Also the limiter's one-step paths: an in-process hit that returns its
    counts (``acquire_and_count``, ``incr_and_expiry``) and a Redis pipeline of
    every window's hit and read (``RedisWindowHits.hit``), one call each.
    """

    SYNC_METHODS = ("acquire_and_count", "incr_and_expiry")

    METHODS = (
        "acquire_entry",
        "get_moving_window",
        "incr",
        "get",
        "get_expiry",
        "acquire_sliding_window_entry",
        "get_sliding_window",
        "decr",
    )

    def __init__(self, storage: object, limiter: RateLimiter | None = None) -> None:
        self.calls = 0
        for name in self.METHODS:
            original = getattr(storage, name, None)
            if original is not None:
                setattr(storage, name, self._counted(original))
        for name in self.SYNC_METHODS:
            original = getattr(storage, name, None)
            if original is not None:
                setattr(storage, name, self._counted_sync(original))
        # A Redis pipeline, one call: wrapped where the limiter holds it. (In memory the
        # one-step hit calls the storage's methods counted above.)
        one_step = limiter._one_step_hit() if limiter is not None else None
        if one_step is not None and not isinstance(storage, SweepingMemoryStorage):
            limiter._one_step = self._counted(one_step)  # type: ignore[union-attr]

    def _counted_sync(self, method):  # type: ignore[no-untyped-def]
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return method(*args, **kwargs)

        return counted

    def _counted(self, method):  # type: ignore[no-untyped-def]
        async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return await method(*args, **kwargs)

        return counted


async def memory_per_principal(strategy: str, principals: int) -> float:
    limiter = RateLimiter(make_policy("memory://", strategy))
    await limiter.spend(ctx_for("warmup"), 1)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for p in range(principals):
        await limiter.spend(ctx_for(f"m{p}"), 1)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    await limiter.aclose()
    return grown / principals


def start_redis() -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            tempfile.mkdtemp(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc, port
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    proc.terminate()
    return None


def redis_stats(port: int) -> tuple[int, int]:
    import redis

    info = redis.Redis(port=port).info()
    calls = sum(v["calls"] for k, v in redis.Redis(port=port).info("commandstats").items())
    return int(info["used_memory"]), int(calls)


async def bench_storage(uri: str, strategy: str, port: int | None) -> dict[str, float]:
    limiter = RateLimiter(make_policy(uri, strategy))
    await time_spends(limiter, 20, 1)  # warm up connections and code paths
    counter = CallCounter(limiter.storage, limiter)
    principals, rounds = 200, 5
    samples = await time_spends(limiter, principals, rounds)
    spend = [a for a, _ in samples]
    status = [b for _, b in samples]
    result = {
        "spend_median_us": statistics.median(spend),
        "spend_p99_us": statistics.quantiles(spend, n=100)[98],
        "status_median_us": statistics.median(status),
        "spends": len(samples),
        "storage_calls_per_request": counter.calls / len(samples),
    }
    if port:
        mem_before, _ = redis_stats(port)
        for p in range(2000):
            ctx = ctx_for(f"mem{p}")
            await limiter.spend(ctx, 1)
            await limiter.status(ctx)
        mem_after, _ = redis_stats(port)
        result["bytes_per_principal"] = (mem_after - mem_before) / 2000
    await limiter.aclose()
    return result


async def growth(strategy: str, prior: int) -> float:
    """Median us per spend for one principal that already spent ``prior`` rows."""
    policy = Policy.model_validate(
        {"tiers": {"public": {"rate_limit": BIG}}, "rate_limiting": {"strategy": strategy}}
    )
    limiter = RateLimiter(policy)
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


async def main() -> None:
    results: dict[str, object] = {"limit": LIMIT}
    results["growth"] = {
        s: {str(n): await growth(s, n) for n in (0, 20_000, 100_000)}
        for s in ("auto", "moving-window")
    }
    for strategy in STRATEGY_NAMES:
        results[f"memory/{strategy}"] = await bench_storage("memory://", strategy, None)
        results[f"memory/{strategy}"]["bytes_per_principal"] = await memory_per_principal(
            strategy, 5000
        )  # type: ignore[index]
    redis = start_redis()
    if redis is None:
        print("redis-server not found: Redis figures skipped", file=sys.stderr)
    else:
        proc, port = redis
        try:
            for strategy in STRATEGY_NAMES:
                results[f"redis/{strategy}"] = await bench_storage(
                    f"redis://127.0.0.1:{port}/0", strategy, port
                )
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ratelimit.json").write_text(json.dumps(results, indent=1))
    print("spend cost after N prior rows of one principal (memory://, one daily budget):")
    for name, by_n in results["growth"].items():  # type: ignore[union-attr]
        print(f"  {name}: " + ", ".join(f"{n} -> {us:.1f} us" for n, us in by_n.items()))
    print(f"\nlimit per principal: {LIMIT} (3 windows)\n")
    print(
        "| storage / strategy | spend median us | spend p99 us | status read median us "
        "| storage calls / request | bytes / principal |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        if not isinstance(r, dict) or name == "growth":
            continue
        per = r.get("bytes_per_principal", float("nan"))
        cmds_s = f"{r['storage_calls_per_request']:.1f}"
        print(
            f"| {name} | {r['spend_median_us']:.1f} | {r['spend_p99_us']:.1f} "
            f"| {r['status_median_us']:.1f} | {cmds_s} | {per:.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
