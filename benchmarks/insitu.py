"""Where a served worker's time goes, step by step, guarded and unguarded.

```sh
.venv/bin/python benchmarks/insitu.py
```

The hot loop of overhead.py times the guard's steps with CPU caches and
branch predictors warm, and cycles.py counts them under callgrind; in a real
worker each step runs after a millisecond of BentoML's own work has cooled
the caches, and costs several times more. This benchmark times the steps
where they really run: ``bentoml serve`` of the example (one worker) and of
its unguarded twin, each service importing ``insitu_probe``, which wraps the
guard's steps (and BentoML's per-response ``IOMixin.mime_type``, for scale)
with timers of the calling thread's CPU time, and sums the garbage
collector's time. The benchmark sends the partner tier's traffic of
overhead.py from a few client threads, alternating the two servers for a few
rounds, and reads per request:

- each step's thread CPU time (less the collections that ran inside it),
- the worker's CPU time per thread (the event loop's and the thread that
  runs sync APIs), from ``/proc``,
- the garbage collector's time, by generation.

Each timed step pays two ``clock_gettime`` calls more (~1 us). The guarded
server runs the foundation's controls (as overhead.py's ``guarded_core``).
Writes ``benchmarks/results/insitu.json`` (git-ignored); ~2 minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import overhead as ov  # sets BENTOML_HOME to its scratch dir, which this script removes
import psutil
from serving import Server

RESULTS = ov.REPO / "benchmarks" / "results" / "insitu.json"
PROBE = Path(__file__).with_name("insitu_probe.py")
ROUNDS = 4
PER_ROUND = 2000  # requests per server and round
WARMUP = 600


def probed_copy(app_dir: Path, source: str, target: str, guarded: bool) -> None:
    """``target`` = ``source`` with the probe installed before the service is defined."""
    text = (app_dir / source).read_text()
    head = f"import insitu_probe\n\ninsitu_probe.install(guarded={guarded})\n"
    marker = "import bentoml\n"
    if marker not in text:
        raise SystemExit(f"cannot place the probe in {source}")
    (app_dir / target).write_text(text.replace(marker, marker + head, 1))


def worker(server: Server) -> psutil.Process:
    for proc in psutil.Process(server.proc.pid).children(recursive=True):
        if "_bentoml_impl.worker" in " ".join(proc.cmdline()):
            return proc
    raise SystemExit(f"{server.name}: no worker process")


def thread_cpu(proc: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in proc.threads()}


def probe_totals(proc: psutil.Process, path: Path) -> dict[str, Any]:
    path.unlink(missing_ok=True)
    os.kill(proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"worker {proc.pid} wrote no probe totals")
        time.sleep(0.05)
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def measure(server: Server, out: Path, traffic: ov.Traffic) -> dict[str, Any]:
    """One round: thread CPU, steps and collections per request over PER_ROUND requests."""
    proc = worker(server)
    cpu0, probe0 = thread_cpu(proc), probe_totals(proc, out)
    result = ov.drive(server.url, traffic, "partner", PER_ROUND)
    cpu1, probe1 = thread_cpu(proc), probe_totals(proc, out)
    n = result["requests"]
    threads = sorted(
        ((cpu1[t] - cpu0.get(t, 0.0)) / n * 1e6 for t in cpu1 if cpu1[t] > cpu0.get(t, 0.0)),
        reverse=True,
    )
    steps = {}
    for name, (calls, ns, gc_ns) in probe1["steps"].items():
        calls0, ns0, gc0 = probe0["steps"].get(name, (0, 0, 0))
        steps[name] = {
            "calls_per_request": (calls - calls0) / n,
            "us": (ns - ns0 - (gc_ns - gc0)) / n / 1e3,
            "gc_us": (gc_ns - gc0) / n / 1e3,
        }
    gc_us = [(probe1["gc"]["ns"][g] - probe0["gc"]["ns"][g]) / n / 1e3 for g in range(3)]
    return {
        "requests": n,
        "worker_cpu_us": sum(threads),
        # the event loop's, then the sync-API thread's (0 if it never ran)
        "threads_cpu_us": [*threads, 0.0, 0.0][:2],
        "gc_us": gc_us,
        "steps": steps,
    }


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    names = rounds[0]["steps"].keys()
    return {
        "requests": sum(r["requests"] for r in rounds),
        "worker_cpu_us": med([r["worker_cpu_us"] for r in rounds]),
        "worker_cpu_us_rounds": [round(r["worker_cpu_us"]) for r in rounds],
        "event_loop_thread_cpu_us": med([r["threads_cpu_us"][0] for r in rounds]),
        "api_thread_cpu_us": med([r["threads_cpu_us"][1] for r in rounds]),
        "gc_us": [med([r["gc_us"][g] for r in rounds]) for g in range(3)],
        "steps": {
            name: {
                key: med([r["steps"][name][key] for r in rounds])
                for key in ("calls_per_request", "us", "gc_us")
            }
            for name in names
        },
    }


def report(results: dict[str, Any]) -> str:
    plain, core = results["legs"]["unguarded"], results["legs"]["guarded_core"]
    rows = [["per request (median of rounds)", "unguarded", "guarded_core", "added"]]

    def row(label: str, a: float | None, b: float) -> None:
        rows.append(
            [
                label,
                "" if a is None else f"{a:,.1f}",
                f"{b:,.1f}",
                "" if a is None else f"{b - a:+,.1f}",
            ]
        )

    row("worker CPU, us", plain["worker_cpu_us"], core["worker_cpu_us"])
    row("  event-loop thread", plain["event_loop_thread_cpu_us"], core["event_loop_thread_cpu_us"])
    row("  sync-API thread", plain["api_thread_cpu_us"], core["api_thread_cpu_us"])
    row("  garbage collection", sum(plain["gc_us"]), sum(core["gc_us"]))
    for name, step in core["steps"].items():
        base = plain["steps"].get(name)
        row(f"  {name}", base["us"] if base else None, step["us"])
    timed = sum(
        s["us"]
        for name, s in core["steps"].items()
        if not name.startswith(("BentoML", "  of which"))
    )
    rows.append(["guard steps timed, sum", "", f"{timed:,.1f}", ""])
    return ov.table(rows)


def main() -> None:
    started = time.monotonic()
    scratch = ov._SCRATCH
    results: dict[str, Any] = {"machine": ov.machine(), "rounds": ROUNDS, "per_round": PER_ROUND}
    servers: dict[str, Server] = {}
    try:
        app_dir, core_dir, keys, rows = ov.prepare_example_apps(scratch)
        probed_copy(app_dir, "service_plain.py", "service_plain_probed.py", guarded=False)
        probed_copy(core_dir, "service.py", "service_probed.py", guarded=True)
        legs = {
            "unguarded": (app_dir, "service_plain_probed:DigitsClassifier"),
            "guarded_core": (core_dir, "service_probed:DigitsClassifier"),
        }
        for name, (directory, target) in legs.items():
            env = ov.server_env(name)
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(PROBE.parent), env.get("PYTHONPATH")])
            )
            env["INSITU_PROBE_OUT"] = str(scratch / f"probe_{name}.json")
            servers[name] = Server(name, directory, env, target)
        traffic = ov.Traffic(keys, rows)
        for server in servers.values():
            server.wait_ready()
            ov.drive(server.url, traffic, "partner", WARMUP)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for round_no in range(ROUNDS):
            order = list(servers) if round_no % 2 == 0 else list(servers)[::-1]
            for name in order:
                out = scratch / f"probe_{name}.json"
                rounds[name].append(measure(servers[name], out, traffic))
            ov.log(f"  round {round_no + 1}/{ROUNDS} done")
        results["legs"] = {name: summarise(r) for name, r in rounds.items()}
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    ov.publish(report(results), results, RESULTS)


if __name__ == "__main__":
    main()
