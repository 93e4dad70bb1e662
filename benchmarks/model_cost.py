"""The guard's share of a served request, for models that cost more than the digits one.

```sh
.venv/bin/python benchmarks/model_cost.py
```

The guard's work per request does not depend on the model: keys, tier,
input checks on one row, truncation of one row of scores, telemetry. Its
share of a worker's time does: the digits example's model answers in a few
microseconds, so the guard is measured against BentoML's own ~1.4 ms per
request and little else. This benchmark serves the example (the foundation's
controls, as overhead.py's ``guarded_core``) and its unguarded twin with the
model made slower by a fixed amount of CPU per call (a busy loop holding the
GIL, as pure-Python pre- or post-processing would; 0 is the example as it
is), and reads, per model cost, in alternating rounds:

- the worker's CPU time per request (all its threads, from ``/proc``),
- requests per second from the client,

and their guarded/unguarded ratios. The busy loop sits in the model's
``predict_proba``, the same in both services. Writes
``benchmarks/results/model_cost.json`` (git-ignored); ~3 minutes.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import overhead as ov  # sets BENTOML_HOME to its scratch dir, which this script removes
from insitu import thread_cpu, worker
from serving import Server

RESULTS = ov.REPO / "benchmarks" / "results" / "model_cost.json"
MODEL_COSTS_US = (0, 250, 1000, 4000)
ROUNDS = 4
ROUND_SECONDS = 2.5  # of work per server and round, whatever the model's cost
WARMUP = 300

SLOW_MODEL = """
import time as _time

import model as _model

_predict_proba = _model.SoftmaxModel.predict_proba


def _slower_predict_proba(self, x):
    until = _time.thread_time_ns() + {cost_ns}
    while _time.thread_time_ns() < until:
        pass
    return _predict_proba(self, x)


_model.SoftmaxModel.predict_proba = _slower_predict_proba
"""


def slowed_copy(app_dir: Path, source: str, target: str, cost_us: int) -> None:
    """``target`` = ``source`` with the model's predict_proba slowed by ``cost_us`` of CPU."""
    text = (app_dir / source).read_text()
    marker = "import bentoml\n"
    if marker not in text:
        raise SystemExit(f"cannot slow the model in {source}")
    head = SLOW_MODEL.format(cost_ns=cost_us * 1000)
    (app_dir / target).write_text(text.replace(marker, marker + head, 1))


def measure(server: Server, traffic: ov.Traffic, requests: int) -> dict[str, float]:
    proc = worker(server)
    cpu0 = thread_cpu(proc)
    result = ov.drive(server.url, traffic, "partner", requests)
    cpu1 = thread_cpu(proc)
    n = result["requests"]
    spent = sum(cpu1[t] - cpu0.get(t, 0.0) for t in cpu1)
    return {"cpu_us": spent / n * 1e6, "rps": n / result["seconds"]}


def run_cost(cost_us: int, app_dir: Path, core_dir: Path, traffic: ov.Traffic) -> dict[str, Any]:
    """Both servers with the model slowed by ``cost_us``; alternating rounds."""
    target = f"service_cost{cost_us}.py"
    slowed_copy(app_dir, "service_plain.py", target, cost_us)
    slowed_copy(core_dir, "service.py", target, cost_us)
    legs = {"unguarded": app_dir, "guarded_core": core_dir}
    servers: dict[str, Server] = {}
    try:
        for name, directory in legs.items():
            env = ov.server_env(f"{name}_{cost_us}")
            servers[name] = Server(name, directory, env, f"{target[:-3]}:DigitsClassifier")
        for server in servers.values():
            server.wait_ready()
            ov.drive(server.url, traffic, "partner", WARMUP)
        # Size the rounds from the unguarded server's pace, so each takes ~ROUND_SECONDS.
        pace = measure(servers["unguarded"], traffic, 200)["rps"]
        per_round = max(200, int(pace * ROUND_SECONDS) // ov.HTTP_THREADS * ov.HTTP_THREADS)
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        for round_no in range(ROUNDS):
            order = list(servers) if round_no % 2 == 0 else list(servers)[::-1]
            for name in order:
                rounds[name].append(measure(servers[name], traffic, per_round))
    finally:
        for server in servers.values():
            server.stop()
    plain, core = rounds["unguarded"], rounds["guarded_core"]
    cpu_plain = statistics.median(r["cpu_us"] for r in plain)
    cpu_core = statistics.median(r["cpu_us"] for r in core)
    rps_plain = sum(r["rps"] for r in plain) / ROUNDS
    rps_core = sum(r["rps"] for r in core) / ROUNDS
    ov.log(f"  model +{cost_us} us: {cpu_plain:,.0f} -> {cpu_core:,.0f} us CPU per request")
    return {
        "model_cost_us": cost_us,
        "requests_per_round": per_round,
        "unguarded": {"cpu_us": cpu_plain, "rps": rps_plain, "rounds": plain},
        "guarded_core": {"cpu_us": cpu_core, "rps": rps_core, "rounds": core},
        "added_cpu_us": cpu_core - cpu_plain,
        "cpu_ratio": cpu_plain / cpu_core,
        "rps_ratio": rps_core / rps_plain,
    }


def report(results: dict[str, Any]) -> str:
    rows = [
        [
            "model made slower by",
            "unguarded CPU/request",
            "guarded CPU/request",
            "added",
            "CPU ratio",
            "rps ratio",
        ]
    ]
    for r in results["costs"]:
        rows.append(
            [
                f"+{r['model_cost_us']:,} us",
                f"{r['unguarded']['cpu_us']:,.0f} us",
                f"{r['guarded_core']['cpu_us']:,.0f} us",
                f"{r['added_cpu_us']:+,.0f} us",
                f"{r['cpu_ratio']:.3f}",
                f"{r['rps_ratio']:.3f}",
            ]
        )
    return ov.table(rows)


def main() -> None:
    started = time.monotonic()
    scratch = ov._SCRATCH
    results: dict[str, Any] = {"machine": ov.machine(), "rounds": ROUNDS}
    try:
        app_dir, core_dir, keys, rows = ov.prepare_example_apps(scratch)
        traffic = ov.Traffic(keys, rows)
        results["costs"] = [run_cost(c, app_dir, core_dir, traffic) for c in MODEL_COSTS_US]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    ov.publish(report(results), results, RESULTS)


if __name__ == "__main__":
    main()
