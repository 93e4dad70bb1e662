"""HTTP throughput: real ``bentoml serve`` processes, guarded and unguarded (overhead.py's b).

Three servers on loopback at once, one worker each: the example (guarded),
its unguarded twin, and the example with the foundation's controls only.
Client threads send one-row requests in legs that rotate round after round;
each leg records requests per second, latencies and the server's CPU time.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .example import Traffic, core_controls, log, server_env
from .serving import Server

THREADS = 4
PER_LEG = 600  # requests per leg, split over the threads
ROUNDS = 6
WARMUP = 200
# HTTP legs: which server, with which tier's key (the unguarded server ignores the key).
# "guarded_core" serves the example with the foundation's controls only (keys, tiers,
# input checks with the reference profile, truncation, spans and metrics): no rate
# limits, no monitor, no audit trail. It shows what those three cost.
LEGS = {
    "unguarded": ("unguarded", "partner"),
    "guarded_public": ("guarded", "public"),
    "guarded_partner": ("guarded", "partner"),
    "guarded_trusted": ("guarded", "trusted"),
    "guarded_partner_core": ("guarded_core", "partner"),
}


def drive(url: str, traffic: Traffic, tier: str, total: int) -> dict[str, Any]:
    """``total`` POST /predict of a tier's traffic from THREADS threads."""
    per_thread = total // THREADS
    latencies: list[list[int]] = [[] for _ in range(THREADS)]
    errors: list[str] = []
    start = threading.Barrier(THREADS + 1)

    def worker(n: int) -> None:
        json_type = {"content-type": "application/json"}
        with httpx.Client(base_url=url, headers=json_type, timeout=30.0) as client:
            client.get("/livez")  # connect outside the timed window
            start.wait()
            clock = time.perf_counter_ns
            for _ in range(per_thread):
                key, body, _ = traffic.take(tier)
                headers = {"authorization": f"Bearer {key}"}
                t0 = clock()
                response = client.post("/predict", content=body, headers=headers)
                latencies[n].append(clock() - t0)
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.perf_counter() - t0
    if errors or any(thread.is_alive() for thread in threads):
        raise SystemExit(f"HTTP leg against {url} failed: {errors[:3] or 'timed out'}")
    return {"requests": per_thread * THREADS, "seconds": elapsed, "latencies_ns": latencies}


def run_http(
    app_dir: Path, traffic: Traffic, rounds: int = ROUNDS, deadline: float = float("inf")
) -> dict[str, Any]:
    """Every leg, ``rounds`` rounds; past 2 rounds, none starts after ``deadline`` (monotonic)."""
    core_dir = app_dir.with_name("digits_core")
    shutil.copytree(app_dir, core_dir, ignore=shutil.ignore_patterns("__pycache__"))
    core_controls(core_dir / "invguard.yaml")
    servers = {
        "unguarded": Server(
            "unguarded", app_dir, server_env("unguarded"), "service_plain:DigitsClassifier"
        ),
        "guarded": Server("guarded", app_dir, server_env("guarded")),
        "guarded_core": Server("guarded_core", core_dir, server_env("guarded_core")),
    }
    legs = dict(LEGS)
    stats: dict[str, dict[str, Any]] = {
        leg: {"requests": 0, "seconds": 0.0, "cpu_s": 0.0, "latencies_ns": [], "round_rps": []}
        for leg in legs
    }
    try:
        for server in servers.values():
            server.wait_ready()
        for server_name, tier in legs.values():  # warm-up, untimed
            drive(servers[server_name].url, traffic, tier, WARMUP)
        order = list(legs)
        round_s = 0.0
        for round_no in range(rounds):
            if round_no >= 2 and time.monotonic() + round_s > deadline:
                log(f"  stopping after {round_no} rounds: the run's time budget")
                break
            round_t0 = time.monotonic()
            rotated = order[round_no % len(order) :] + order[: round_no % len(order)]
            if round_no % 2:
                rotated.reverse()
            for leg in rotated:
                server_name, tier = legs[leg]
                server = servers[server_name]
                cpu0 = server.cpu_seconds()
                result = drive(server.url, traffic, tier, PER_LEG)
                cpu1 = server.cpu_seconds()
                s = stats[leg]
                s["requests"] += result["requests"]
                s["seconds"] += result["seconds"]
                s["cpu_s"] += cpu1 - cpu0
                s["round_rps"].append(result["requests"] / result["seconds"])
                for lat in result["latencies_ns"]:
                    s["latencies_ns"].extend(lat)
            round_s = time.monotonic() - round_t0
            log(f"  HTTP round {round_no + 1}/{rounds} done ({round_s:.1f} s)")
    finally:
        for server in servers.values():
            server.stop()

    out: dict[str, Any] = {}
    for leg, s in stats.items():
        lat = np.asarray(s["latencies_ns"], dtype=np.float64) / 1e6
        out[leg] = {
            "requests": s["requests"],
            "seconds": round(s["seconds"], 3),
            "rps": s["requests"] / s["seconds"],
            "round_rps": [round(v, 1) for v in s["round_rps"]],
            "latency_ms_p50": float(np.median(lat)),
            "latency_ms_p99": float(np.percentile(lat, 99)),
            "server_cpu_us_per_request": s["cpu_s"] / s["requests"] * 1e6,
        }
    base = out["unguarded"]
    for leg in LEGS:
        if leg == "unguarded":
            continue
        g = out[leg]
        g["rps_ratio"] = g["rps"] / base["rps"]
        g["round_ratio_median"] = statistics.median(
            gr / ur for gr, ur in zip(g["round_rps"], base["round_rps"], strict=True)
        )
        g["added_server_cpu_us_per_request"] = (
            g["server_cpu_us_per_request"] - base["server_cpu_us_per_request"]
        )
    return out
