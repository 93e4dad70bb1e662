"""Load on Redis: what a rate-limit spend costs, and 200 principals at once on two workers.

    .venv/bin/python benchmarks/load.py               # ~3 minutes on 2 cores; needs redis-server
    .venv/bin/python benchmarks/load.py --quick       # ~1.5 minutes
    .venv/bin/python benchmarks/load.py --spend-only  # ~30 s; Redis rows only with redis-server

First, in process (``support/spend.py``): microseconds per ``RateLimiter.spend``
for memory and Redis storage and every strategy, Redis commands per spend and
bytes per principal (``benchmarks/results/spend.json``). Then, bounded and
loopback only, in a temp dir it

1. copies ``examples/digits`` twice and trains the model once (each server
   gets its own copy of the BentoML home: ``bentoml serve`` wipes its
   Prometheus directory at start);
2. starts a ``redis-server`` on a free loopback port;
3. serves the *guarded* copy with ``workers=2`` and ``storage: redis://...``:
   every tier's limits are lifted out of reach (1000/second, 10^6/day), and a
   ``limited`` tier of LIMITED principals allows LIMITED_LIMIT rows an hour
   (a moving window: exact over the run); the monitor is on, as shipped;
4. serves the *unguarded* copy (the ``@protect`` line removed), also
   ``workers=2``;
5. drives both with asyncio + httpx (CONCURRENCY requests in flight, keep-alive)
   in alternating legs of REQUESTS_PER_LEG one-row requests from GENEROUS
   principals in turn (distinct real digits), ROUNDS rounds, reversing the order
   every other round; then a *limits* phase: every limited principal sends
   LIMITED_SENDS requests at once, mixed with generous traffic;
6. stops everything and writes ``benchmarks/results/load.json`` and a markdown
   table on stdout.

Checked (the exit code is 1 if any fails): no 5xx anywhere, each limited
principal gets exactly LIMITED_LIMIT answers and 429 for the rest (two
workers share the counts through Redis), both workers answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from support import report, spend
from support.load_traffic import (
    CONCURRENCY,
    GENEROUS,
    LIMITED,
    LIMITED_LIMIT,
    Job,
    Traffic,
    digit_bodies,
    drive,
    guarded_policy,
    make_keys,
    merge,
    server_env,
    summary,
    train,
    two_workers,
)
from support.serving import RedisServer, Server, copy_example

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"

LIMITED_SENDS = 32  # requests each limited principal sends
ROUNDS = 6
REQUESTS_PER_LEG = 2000
WARMUP = 300
BUDGET_S = 170.0  # no new round starts past this (setup included)


def log(message: str) -> None:
    print(f"[load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
    return {**report.machine(), "redis": redis.stdout.strip()}


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 500 requests a leg")
    parser.add_argument(
        "--spend-only", action="store_true", help="only the in-process rate-limit spend cost"
    )
    args = parser.parse_args(argv)
    spent = spend.measure(quick=args.quick)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spend.json").write_text(json.dumps(spent, indent=1))
    print(spend.report(spent) + "\n")
    if args.spend_only:
        return 0
    return load(rounds=2 if args.quick else ROUNDS, per_leg=500 if args.quick else REQUESTS_PER_LEG)


def load(rounds: int, per_leg: int) -> int:
    """The HTTP load and the limits phase; 0 if every check holds."""
    began = time.monotonic()
    info = machine()
    scratch = Path(tempfile.mkdtemp(prefix="invguard-load-"))
    servers: list[Server] = []
    redis: RedisServer | None = None
    try:
        guarded_dir = copy_example(scratch / "guarded" / "digits")
        plain_dir = copy_example(scratch / "plain" / "digits")
        log("training the example once")
        train(guarded_dir, scratch / "home_train")
        homes = {}
        for name in ("guarded", "plain"):
            homes[name] = scratch / f"home_{name}"
            shutil.copytree(scratch / "home_train" / "models", homes[name] / "models")
        shutil.copy(guarded_dir / "digits.profile.json", plain_dir / "digits.profile.json")
        redis = RedisServer(scratch)
        two_workers(guarded_dir / "service.py", guarded=True)
        two_workers(plain_dir / "service.py", guarded=False)
        guarded_policy(guarded_dir / "invguard.yaml", redis.url)
        keys = make_keys()
        bodies = digit_bodies(guarded_dir)
        guarded = Server("guarded", guarded_dir, server_env(homes["guarded"], keys))
        plain = Server("unguarded", plain_dir, server_env(homes["plain"], keys))
        servers = [guarded, plain]
        for server in servers:
            server.wait_ready()
        log(f"servers ready after {time.monotonic() - began:.0f} s; {len(bodies)} digits")

        traffic = Traffic(keys, bodies)
        for server in servers:
            asyncio.run(drive(server.url, traffic.take(WARMUP)))
        legs: dict[str, list[dict[str, Any]]] = {"unguarded": [], "guarded": []}
        cpu: dict[str, float] = {"unguarded": 0.0, "guarded": 0.0}
        rounds_done = 0
        for r in range(rounds):
            if time.monotonic() - began > BUDGET_S:
                log(f"budget reached: stopping after {rounds_done} rounds")
                break
            order = [plain, guarded] if r % 2 == 0 else [guarded, plain]
            for server in order:
                name = "unguarded" if server is plain else "guarded"
                jobs = traffic.take(per_leg)
                before = server.cpu_seconds()
                leg = asyncio.run(drive(server.url, jobs))
                cpu[name] += server.cpu_seconds() - before
                legs[name].append(leg)
                log(f"round {r + 1} {name}: {summary(leg)['rps']} rps {summary(leg)['statuses']}")
            rounds_done += 1

        log("limits phase: limited principals at once, mixed with generous traffic")
        limited_jobs: list[Job] = []
        for principal, key in traffic.limited:
            for n in range(LIMITED_SENDS):
                limited_jobs.append((principal, key, bodies[(n * 37 + 11) % len(bodies)]))
        mixed = limited_jobs + traffic.take(len(limited_jobs))
        random.Random(0).shuffle(mixed)
        limits_leg = asyncio.run(drive(guarded.url, mixed))
        workers = sorted(guarded.workers_seen())
    finally:
        for server in servers:
            server.stop()
        if redis is not None:
            redis.stop()

    totals = {name: merge(runs) for name, runs in legs.items()}
    results: dict[str, Any] = {
        "machine": info,
        "settings": {
            "principals": GENEROUS + LIMITED,
            "generous_principals": GENEROUS,
            "limited_principals": LIMITED,
            "limited_limit_per_hour": LIMITED_LIMIT,
            "limited_sends": LIMITED_SENDS,
            "concurrency": CONCURRENCY,
            "rounds": rounds_done,
            "requests_per_leg": per_leg,
            "workers": 2,
            "storage": "redis (local redis-server)",
        },
        "unguarded": summary(totals["unguarded"]),
        "guarded": summary(totals["guarded"]),
        "rounds": {name: [summary(leg) for leg in runs] for name, runs in legs.items()},
        "server_cpu_ms_per_request": {
            name: round(1000 * cpu[name] / max(1, totals[name]["requests"]), 3) for name in cpu
        },
        "limits_phase": summary(limits_leg),
        "guarded_workers_seen": workers,
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "wall_seconds": round(time.monotonic() - began, 1),
    }
    g, u = results["guarded"], results["unguarded"]
    results["ratio"] = {
        "rps_guarded_over_unguarded": round(g["rps"] / u["rps"], 3),
        "p50_guarded_over_unguarded": round(g["p50_ms"] / u["p50_ms"], 3),
        "p99_guarded_over_unguarded": round(g["p99_ms"] / u["p99_ms"], 3),
        "per_round_rps_ratio_median": round(
            statistics.median(
                summary(gl)["rps"] / summary(ul)["rps"]
                for gl, ul in zip(legs["guarded"], legs["unguarded"], strict=True)
            ),
            3,
        ),
    }
    limited_counts = {p: dict(limits_leg["per_principal"][p]) for p, _ in traffic.limited}
    exact = all(
        c.get(200, 0) == LIMITED_LIMIT and c.get(429, 0) == LIMITED_SENDS - LIMITED_LIMIT
        for c in limited_counts.values()
    )
    server_errors = sum(
        n
        for leg in [*legs["guarded"], *legs["unguarded"], limits_leg]
        for status, n in leg["statuses"].items()
        if status >= 500
    )
    generous_in_limits = Counter[int]()
    for principal, counts in limits_leg["per_principal"].items():
        if not principal.startswith("load-limited-"):
            generous_in_limits.update(counts)
    results["checks"] = {
        "server_errors_5xx": server_errors,
        "limited_exact": exact,
        "limited_counts": {p: {str(k): v for k, v in c.items()} for p, c in limited_counts.items()},
        "generous_statuses_in_limits_phase": {str(k): v for k, v in generous_in_limits.items()},
        "both_workers_answered": workers == ["1", "2"],
        "first_server_errors": [e for leg in legs["guarded"] for e in leg["server_errors"]][:5],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)

    cpu_ms = results["server_cpu_ms_per_request"]
    print(
        report.table(
            [
                [
                    "service (2 workers)",
                    "requests",
                    "rps",
                    "p50 ms",
                    "p99 ms",
                    "server CPU ms/req",
                    "statuses",
                ],
                *[
                    [
                        name,
                        str(results[name]["requests"]),
                        str(results[name]["rps"]),
                        str(results[name]["p50_ms"]),
                        str(results[name]["p99_ms"]),
                        str(cpu_ms[name]),
                        " ".join(f"{k}:{v}" for k, v in results[name]["statuses"].items()),
                    ]
                    for name in ("unguarded", "guarded")
                ],
                [
                    "guarded / unguarded",
                    "",
                    str(results["ratio"]["rps_guarded_over_unguarded"]),
                    str(results["ratio"]["p50_guarded_over_unguarded"]),
                    str(results["ratio"]["p99_guarded_over_unguarded"]),
                    str(round(cpu_ms["guarded"] / cpu_ms["unguarded"], 3)),
                    "",
                ],
            ]
        )
    )
    print()
    print(
        f"limits phase: {LIMITED} limited principals x {LIMITED_SENDS} requests "
        f"(limit {LIMITED_LIMIT}/hour) mixed with {len(limited_jobs)} generous ones: "
        f"exact={exact}; 5xx anywhere: {server_errors}; guarded workers seen: {workers}; "
        f"wall {results['wall_seconds']} s"
    )
    ok = server_errors == 0 and exact and results["checks"]["both_workers_answered"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
