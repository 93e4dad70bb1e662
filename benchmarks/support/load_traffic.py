"""The load benchmark's servers and client: policy, keys, one-row digits, an asyncio driver.

The guarded copy of the example gets two workers, Redis storage, every tier's
limits lifted out of reach and a ``limited`` tier of LIMITED_LIMIT rows an
hour; the unguarded copy gets two workers and no ``@protect``. :func:`drive`
sends jobs with CONCURRENCY requests in flight and counts statuses per
principal.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from bento_invguard import Profile, generate_key, hash_key

GENEROUS = 190  # principals with limits out of reach, spread over the three tiers
LIMITED = 10  # principals of the "limited" tier
LIMITED_LIMIT = 20  # rows an hour
CONCURRENCY = 16
TIERS = ("public", "partner", "trusted")
GENEROUS_LIMIT = "1000/second;1000000/day"


def two_workers(service: Path, *, guarded: bool) -> None:
    text = service.read_text()
    text = text.replace(
        '@bentoml.service(name="digits_classifier")',
        '@bentoml.service(name="digits_classifier", workers=2)',
    )
    if not guarded:
        text = text.replace('@protect("invguard.yaml")\n', "")
    assert "workers=2" in text and (guarded or "@protect" not in text)
    service.write_text(text)


def guarded_policy(path: Path, storage: str) -> None:
    policy = yaml.safe_load(path.read_text())
    policy["storage"] = storage
    for tier in TIERS:
        policy["tiers"][tier]["rate_limit"] = GENEROUS_LIMIT
    policy["tiers"]["limited"] = {
        "output": "label",
        "endpoints": ["predict"],
        "rate_limit": f"{LIMITED_LIMIT}/hour",
    }
    path.write_text(yaml.safe_dump(policy))


def make_keys() -> dict[str, tuple[str, str]]:
    """principal id -> (tier, raw key)."""
    keys = {f"load-{TIERS[i % 3]}-{i}": (TIERS[i % 3], generate_key()) for i in range(GENEROUS)}
    keys.update({f"load-limited-{i}": ("limited", generate_key()) for i in range(LIMITED)})
    return keys


def server_env(home: Path, keys: dict[str, tuple[str, str]]) -> dict[str, str]:
    env = dict(os.environ, BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("INVGUARD_POLICY", None)
    env.pop("INVGUARD_STORAGE", None)
    env["INVGUARD_KEYS"] = json.dumps(
        [{"id": pid, "sha256": hash_key(key), "tier": tier} for pid, (tier, key) in keys.items()]
    )
    return env


def train(app_dir: Path, home: Path) -> None:
    env = dict(os.environ, BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True")
    subprocess.run(
        [sys.executable, "train.py"],
        cwd=app_dir,
        env=env,
        check=True,
        timeout=180,
        stdout=subprocess.DEVNULL,
    )


def digit_bodies(app_dir: Path) -> list[bytes]:
    """One-row bodies of every digit that passes the example's reference profile."""
    from sklearn.datasets import load_digits

    profile = Profile.load(app_dir / "digits.profile.json")
    rows = load_digits().data.astype(np.float64)
    return [
        json.dumps({"x": [row.tolist()]}).encode()
        for row in rows
        if profile.first_violation(row[None, :]) is None
    ]


Job = tuple[str, str, bytes]  # (principal id, raw key, body)


async def drive(url: str, jobs: list[Job]) -> dict[str, Any]:
    """Send ``jobs`` with CONCURRENCY in flight; latencies, statuses (per principal too)."""
    latencies: list[int] = []
    statuses: Counter[int] = Counter()
    per_principal: dict[str, Counter[int]] = {}
    bad: list[str] = []
    cursor = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        await asyncio.gather(*(client.get("/livez") for _ in range(CONCURRENCY)))

        async def worker() -> None:
            nonlocal cursor
            clock = time.perf_counter_ns
            while cursor < len(jobs):
                principal, key, body = jobs[cursor]
                cursor += 1
                headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
                t0 = clock()
                response = await client.post("/predict", content=body, headers=headers)
                latencies.append(clock() - t0)
                statuses[response.status_code] += 1
                per_principal.setdefault(principal, Counter())[response.status_code] += 1
                if response.status_code >= 500 and len(bad) < 5:
                    bad.append(f"{response.status_code} {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(jobs),
        "seconds": elapsed,
        "latencies_ns": latencies,
        "statuses": statuses,
        "per_principal": per_principal,
        "server_errors": bad,
    }


class Traffic:
    """Generous principals in turn, each sending digits it has not sent before."""

    def __init__(self, keys: dict[str, tuple[str, str]], bodies: list[bytes]) -> None:
        self.generous = [(p, k) for p, (t, k) in keys.items() if t != "limited"]
        self.limited = [(p, k) for p, (t, k) in keys.items() if t == "limited"]
        self.bodies = bodies
        self.count = 0

    def take(self, n: int) -> list[Job]:
        jobs = []
        for _ in range(n):
            principal, key = self.generous[self.count % len(self.generous)]
            jobs.append((principal, key, self.bodies[self.count % len(self.bodies)]))
            self.count += 1
        return jobs


def summary(leg: dict[str, Any]) -> dict[str, Any]:
    ms = np.asarray(leg["latencies_ns"], dtype=np.float64) / 1e6
    return {
        "requests": leg["requests"],
        "seconds": round(leg["seconds"], 3),
        "rps": round(leg["requests"] / leg["seconds"], 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "statuses": {str(k): v for k, v in sorted(leg["statuses"].items())},
    }


def merge(legs: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    for leg in legs:
        statuses.update(leg["statuses"])
    return {
        "requests": sum(leg["requests"] for leg in legs),
        "seconds": sum(leg["seconds"] for leg in legs),
        "latencies_ns": [ns for leg in legs for ns in leg["latencies_ns"]],
        "statuses": statuses,
    }
