"""What the guard costs per request, counted rather than timed: the real worker under callgrind.

```sh
.venv/bin/python benchmarks/cycles.py          # needs valgrind (Debian: apt-get install valgrind)
```

Timings of a ``bentoml serve`` worker on a small shared VM vary by +-100 us
per request between runs of the same server, more than the differences this
project tries to measure. Valgrind's callgrind counts what the worker's
CPU has to do instead: instructions executed, first-level cache misses and
branch mispredictions, simulated, so the same code and the same requests give
the same counts on any run, busy machine or not.

Each leg starts the example with ``bentoml serve`` (one worker), its worker
process under callgrind with instrumentation off, warms it up, then switches
instrumentation on (``callgrind_control``) for N sequential requests of one
connection, and dumps. The arbiter and the client run natively. Legs:

- ``unguarded``: the example without ``@protect``;
- ``guarded_core``: the foundation's controls only (keys, tiers, input checks
  with the reference profile, truncation, spans and metrics), partner tier;
- ``guarded_partner``: every control of the example's policy (rate limits lifted
  as in overhead.py, monitor, audit trail), partner tier;
- ``guarded_partner_no_audit``: the same without the audit trail. The audit
  writer batches records by time (it lingers 50 ms for more); a worker under
  callgrind runs some 50 times slower, so here every batch holds one record
  and the audit's cost per query is overstated. This leg shows the rest.

A cost per request is then estimated as ``Ir + 10 * L1 misses + 100 * LL
misses + 15 * mispredicted branches`` (cycles, a usual rough model). It is a
model: it ranks changes reliably, but the measured CPU ratio of
``overhead.py`` has come out a few points lower than the model's.
Writes ``benchmarks/results/cycles.json`` (git-ignored); a run takes 4 to 10
minutes, depending on the machine's load.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from support import example as ov  # sets BENTOML_HOME to a scratch dir, removed at the end
from support.report import machine, publish, table
from support.serving import TARGET, free_port

RESULTS = ov.REPO / "benchmarks" / "results" / "cycles.json"
REQUESTS = 200  # instrumented requests per leg
WARMUP = 80
READY_TIMEOUT_S = 300.0
#: Cycles charged per event in the estimate.
WEIGHTS = {"L1 misses": 10, "LL misses": 100, "mispredicts": 15}
LEGS = {
    "unguarded": ("plain", "service_plain:DigitsClassifier"),
    "guarded_core": ("core", TARGET),
    "guarded_partner": ("full", TARGET),
    "guarded_partner_no_audit": ("no_audit", TARGET),
}


def without_audit(policy_path: Path) -> None:
    data = yaml.safe_load(policy_path.read_text())
    data["audit"] = {"sink": "none"}
    policy_path.write_text(yaml.safe_dump(data, sort_keys=False))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def launcher(scratch: Path, out_dir: Path) -> Path:
    """A ``bentoml serve`` whose workers start under callgrind (BentoML spawns sys.executable)."""
    wrapper = scratch / "python-under-callgrind"
    wrapper.write_text(
        "#!/bin/sh\n"
        "exec valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes --instr-atstart=no "
        f'--callgrind-out-file={out_dir}/callgrind.%p {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    script = scratch / "serve_under_callgrind.py"
    script.write_text(
        "import sys\n"
        f"sys.executable = {str(wrapper)!r}\n"
        "from bentoml_cli.cli import cli\n"
        "sys.argv = ['bentoml', 'serve', *sys.argv[1:]]\n"
        "cli()\n"
    )
    return script


def callgrind_control(*args: str) -> str:
    done = subprocess.run(
        ["callgrind_control", *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout


def worker_pid() -> str:
    for line in callgrind_control().splitlines():
        if "worker.service" in line:  # "PID <pid>: python -m _bentoml_impl.worker.service ..."
            return line.split(":")[0].split()[-1]
    raise SystemExit("no BentoML worker under callgrind found")


def totals(path: Path) -> dict[str, int]:
    events: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("totals:"):
            return dict(zip(events, map(int, line.split()[1:]), strict=True))
    raise SystemExit(f"no totals in {path}")


def per_request(counts: dict[str, int], n: int) -> dict[str, float]:
    l1 = counts["I1mr"] + counts["D1mr"] + counts["D1mw"]
    ll = counts["ILmr"] + counts["DLmr"] + counts["DLmw"]
    mispredicts = counts["Bcm"] + counts["Bim"]
    estimate = (
        counts["Ir"]
        + WEIGHTS["L1 misses"] * l1
        + WEIGHTS["LL misses"] * ll
        + WEIGHTS["mispredicts"] * mispredicts
    )
    figures = {
        "instructions": counts["Ir"],
        "l1_misses": l1,
        "l1i_misses": counts["I1mr"],
        "ll_misses": ll,
        "mispredicts": mispredicts,
        "est_cycles": estimate,
    }
    return {name: value / n for name, value in figures.items()}


def run_leg(name: str, app_dir: Path, target: str, traffic: ov.Traffic, scratch: Path) -> Any:
    out_dir = scratch / f"callgrind_{name}"
    out_dir.mkdir()
    script = launcher(scratch, out_dir)
    env = dict(ov.server_env(name), PYTHONHASHSEED="0")
    port = free_port()
    log_path = scratch / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), target, "--host", ov.HOST, "--port", str(port)],
            cwd=app_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{ov.HOST}:{port}"
    try:
        with httpx.Client(base_url=url, timeout=120.0) as client:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name}: not ready\n{log_path.read_text()[-3000:]}")
                time.sleep(1.0)

            def send(count: int) -> None:
                for _ in range(count):
                    key, body, _ = traffic.take("partner")
                    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
                    response = client.post("/predict", content=body, headers=headers)
                    if response.status_code != 200:
                        raise SystemExit(f"{name}: {response.status_code} {response.text[:200]}")

            send(WARMUP)
            pid = worker_pid()
            callgrind_control("--zero", pid)
            callgrind_control("--instr=on", pid)
            send(REQUESTS)
            callgrind_control(f"--dump={name}", pid)
            callgrind_control("--instr=off", pid)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    dumps = sorted(out_dir.glob(f"callgrind.{pid}.*"))
    if not dumps:
        raise SystemExit(f"{name}: callgrind wrote no dump for worker {pid}")
    return per_request(totals(dumps[0]), REQUESTS)


def report(results: dict[str, Any]) -> str:
    base = results["legs"]["unguarded"]
    columns = ("instructions", "l1_misses", "l1i_misses", "ll_misses", "mispredicts", "est_cycles")
    rows = [["per request", *columns, "est. ratio vs unguarded"]]
    for leg, figures in results["legs"].items():
        ratio = base["est_cycles"] / figures["est_cycles"]
        rows.append([leg, *(f"{figures[c]:,.0f}" for c in columns), f"{ratio:.3f}"])
        if leg != "unguarded":
            added = [f"+{figures[c] - base[c]:,.0f}" for c in columns]
            rows.append([f"{leg}, added", *added, ""])
    return table(rows)


def main() -> None:
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"needs {', '.join(missing)} (Debian: apt-get install valgrind)")
    started = time.monotonic()
    scratch = ov.SCRATCH
    results: dict[str, Any] = {
        "machine": machine(),
        "requests_per_leg": REQUESTS,
        "weights": WEIGHTS,
        "legs": {},
    }
    try:
        app_dir, core_dir, keys, rows = ov.prepare_example_apps(scratch)
        no_audit_dir = app_dir.with_name("digits_no_audit")
        shutil.copytree(app_dir, no_audit_dir, ignore=shutil.ignore_patterns("__pycache__"))
        without_audit(no_audit_dir / "invguard.yaml")
        dirs = {"plain": app_dir, "core": core_dir, "full": app_dir, "no_audit": no_audit_dir}
        for leg, (which, target) in LEGS.items():
            log(f"{leg}: bentoml serve, worker under callgrind ...")
            traffic = ov.Traffic(keys, rows)  # the same requests, in the same order, per leg
            results["legs"][leg] = run_leg(leg, dirs[which], target, traffic, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    publish(report(results), results, RESULTS)


if __name__ == "__main__":
    main()
