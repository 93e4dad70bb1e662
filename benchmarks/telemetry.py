"""What transparency costs per guarded call: spans, metrics and the audit trail, in process.

    .venv/bin/python benchmarks/telemetry.py

Everything runs in this process, in a temp dir (its own BENTOML_HOME), with
bounded loops (about half a minute on 2 cores). Modes:

  off            BentoML's own tracer provider at its default ``sample_rate: 0``,
                 every query under an unsampled server span: the guard opens no
                 span of its own; audit ``sink: none``; Prometheus and
                 OpenTelemetry metrics still count
  sampled        a tracer provider passed in that samples every span, exported by
                 a BatchSpanProcessor (to an exporter that discards, so export is
                 off the request path as with OTLP), an SDK MeterProvider; audit
                 ``sink: none``
  off+audit      tracing off, audit ``sink: jsonl`` (the policy's default)
  sampled+audit  both

(a) "recorder": Recorder.start + three control decisions + Recorder.finish
    on a QueryContext like a real allowed query (64-feature row, predicted
    class), in a hot loop; minus the same decisions with no recorder. This is
    the telemetry's own cost per query.
(b) "in situ": the full BentoML app of a @protect service per mode, driven
    through Starlette's TestClient in blocks of 100 requests, modes rotating
    block by block (in a rotated order each round); per request, the median
    over blocks of the wall time and of this process's CPU time (all threads;
    each block ends by flushing the span processor and the audit writer and by
    a garbage collection, so background work and garbage are charged to the
    block that caused them), and the median over rounds of each mode's difference from
    ``off`` in the same round. CPU time does not move with other processes'
    load; the TestClient round trip (~3 ms) is in both.

Results: a table on stdout and benchmarks/results/telemetry.json.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "telemetry.json"

_SCRATCH = Path(tempfile.mkdtemp(prefix="invguard-bench-telemetry-"))
os.environ["BENTOML_HOME"] = str(_SCRATCH / "bentoml_home")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

import bentoml  # noqa: E402
import numpy as np  # noqa: E402
from opentelemetry import context as otel_context  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_ON  # noqa: E402
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags  # noqa: E402
from serving import forget_bentoml_metrics  # noqa: E402

from bento_invguard import Policy, QueryContext, generate_key, hash_key, protect  # noqa: E402
from bento_invguard.telemetry import Recorder, TelemetryOptions  # noqa: E402

RECORDER_CALLS = 20_000
RECORDER_WARMUP = 2_000
SITU_ROUNDS = 16  # rounds of one block per mode
SITU_BLOCK = 100  # requests per block
SITU_WARMUP_ROUNDS = 1
MODES = ("off", "sampled", "off+audit", "sampled+audit")
N_FEATURES = 64
WEIGHTS = np.random.default_rng(0).normal(size=(N_FEATURES, 10))


class DiscardingExporter(SpanExporter):
    """Receives batches on the processor's thread and drops them (counts only)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def policy_for(mode: str, key: str) -> Policy:
    audit: dict[str, Any] = {"sink": "none"}
    if mode.endswith("+audit"):
        audit = {"sink": "jsonl", "path": str(_SCRATCH / f"audit-{mode}.jsonl")}
    return Policy.model_validate(
        {
            "keys": [{"id": "bench", "sha256": hash_key(key), "tier": "partner"}],
            "keys_from": {"env": None},
            "tiers": {"partner": {"output": "top_k", "k": 3}},
            "input": {"shape": [N_FEATURES], "min": 0.0, "max": 16.0},
            "audit": audit,
            "monitor": {"enabled": False},
        }
    )


def options_for(mode: str) -> tuple[TelemetryOptions, DiscardingExporter]:
    exporter = DiscardingExporter()
    if not mode.startswith("sampled"):
        # BentoML's own provider (sample_rate 0 by default): no provider passed in.
        return TelemetryOptions(under_bentoml=True), exporter
    tracer_provider = TracerProvider(sampler=ALWAYS_ON)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    options = TelemetryOptions(
        tracer_provider=tracer_provider, meter_provider=meter_provider, under_bentoml=True
    )
    return options, exporter


# ---------------------------------------------------------------- (a) recorder


def one_query(recorder: Recorder | None, row: np.ndarray) -> None:
    ctx = QueryContext(endpoint="predict", path="/predict", client="127.0.0.1")
    if recorder is not None:
        recorder.start(ctx)
    ctx.principal, ctx.tier_name = "bench", "partner"
    ctx.decide("access", "authenticated", "partner")
    ctx.decide("rate_limit", "spent", "1")
    ctx.input, ctx.rows = row, 1
    ctx.decide("validate", "pass", "1 rows")
    ctx.output_mode, ctx.predicted = "top_k", [3]
    ctx.status = 200
    if recorder is not None:
        recorder.finish(ctx)


def time_calls(call: Callable[[], None], n: int) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        started = clock()
        call()
        out.append(clock() - started)
    return out


def bench_recorder(key: str) -> dict[str, Any]:
    row = np.random.default_rng(1).uniform(0, 16, size=(1, N_FEATURES))
    recorders: dict[str, Recorder] = {}
    exporters: dict[str, DiscardingExporter] = {}
    for mode in MODES:
        options, exporters[mode] = options_for(mode)
        recorders[mode] = Recorder(policy_for(mode, key), options)
    calls: dict[str, Callable[[], None]] = {"baseline": lambda: one_query(None, row)}
    for mode, recorder in recorders.items():
        calls[mode] = lambda r=recorder: one_query(r, row)  # type: ignore[misc]
    samples: dict[str, list[int]] = {name: [] for name in calls}
    # Every query runs under an unsampled server span, as BentoML's HTTP middleware
    # opens one per request at its default tracing.sample_rate (0).
    server_span = NonRecordingSpan(
        SpanContext(0x5EED, 0x5EED, is_remote=False, trace_flags=TraceFlags(0))
    )
    token = otel_context.attach(trace.set_span_in_context(server_span))
    gc.collect()
    gc.disable()
    try:
        for call in calls.values():
            time_calls(call, RECORDER_WARMUP)
        # Interleaved blocks, so drift hits every mode alike.
        for _ in range(10):
            for name, call in calls.items():
                samples[name].extend(time_calls(call, RECORDER_CALLS // 10))
                if recorders.get(name) is not None and recorders[name].audit is not None:
                    recorders[name].flush(30.0)
    finally:
        gc.enable()
        otel_context.detach(token)
    base = statistics.median(samples["baseline"])
    result: dict[str, Any] = {}
    for name, values in samples.items():
        arr = np.asarray(values, dtype=np.float64) / 1e3
        result[name] = {
            "median_us": float(np.median(arr)),
            "p99_us": float(np.percentile(arr, 99)),
            "added_median_us": float((np.median(values) - base) / 1e3),
            "n": len(values),
        }
    for mode, recorder in recorders.items():
        recorder.close(30.0)
        result[mode]["spans_exported"] = exporters[mode].spans
        if recorder.audit is not None:
            result[mode]["audit_written"] = recorder.audit.written
            result[mode]["audit_dropped"] = recorder.audit.dropped
    return result


# ---------------------------------------------------------------- (b) in situ


def service_for(mode: str, key: str) -> tuple[Any, TelemetryOptions]:
    options, _ = options_for(mode)

    @protect(
        policy_for(mode, key),
        tracer_provider=options.tracer_provider,
        meter_provider=options.meter_provider,
    )
    @bentoml.service(name=f"bench_{mode.replace('+', '_')}")
    class Bench:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            z = np.asarray(x, dtype=np.float64) / 16.0 @ WEIGHTS
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

    return Bench, options


def bench_in_situ(key: str) -> dict[str, Any]:
    """Blocks of requests per mode, rotating; wall and process CPU time per request.

    CPU time of this process (all its threads) per request does not move with
    other processes' load, and each block ends by flushing the span processor
    and the audit writer, so background work is charged to its own mode.
    """
    from starlette.testclient import TestClient

    from bento_invguard.integration.guard import GUARD_ATTR

    rng = np.random.default_rng(2)
    rows = rng.uniform(0, 16, (97, N_FEATURES)).round(2)
    bodies = [json.dumps({"x": [row.tolist()]}) for row in rows]
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    apps: dict[str, tuple[Any, Recorder, TelemetryOptions]] = {}
    for mode in MODES:
        forget_bentoml_metrics()
        service, options = service_for(mode, key)
        client = TestClient(service.to_asgi())
        client.__enter__()
        recorder = getattr(service.apis["predict"].func, GUARD_ATTR).recorder
        apps[mode] = (client, recorder, options)
    wall: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        for round_ in range(SITU_WARMUP_ROUNDS + SITU_ROUNDS):
            order = MODES[round_ % len(MODES) :] + MODES[: round_ % len(MODES)]
            for mode in order:  # rotated each round: no mode always follows another
                client, recorder, options = apps[mode]
                if round_ == SITU_WARMUP_ROUNDS:
                    gc.collect()
                    gc.freeze()  # BentoML's long-lived heap: not rescanned by each collect
                gc.collect()  # the previous block's garbage is not this block's cost
                wall0, cpu0 = time.perf_counter_ns(), time.process_time_ns()
                for i in range(SITU_BLOCK):
                    body = bodies[(round_ * SITU_BLOCK + i) % len(bodies)]
                    response = client.post("/predict", content=body, headers=headers)
                    if response.status_code != 200:
                        raise SystemExit(f"{mode}: HTTP {response.status_code} {response.text}")
                wall1 = time.perf_counter_ns()  # before the flush: the writer lingers idle
                if options.tracer_provider is not None:
                    options.tracer_provider.force_flush()
                recorder.flush(30.0)
                gc.collect()  # this block's garbage is
                if round_ >= SITU_WARMUP_ROUNDS:
                    wall[mode].append((wall1 - wall0) / SITU_BLOCK / 1e3)
                    cpu[mode].append((time.process_time_ns() - cpu0) / SITU_BLOCK / 1e3)
    finally:
        gc.unfreeze()
        for client, recorder, _ in apps.values():
            client.__exit__(None, None, None)
            recorder.close(30.0)

    def paired(values: list[float], base: list[float]) -> float:
        """Median over rounds of (mode - off) within the same round."""
        return statistics.median(v - b for v, b in zip(values, base, strict=True))

    return {
        mode: {
            "wall_median_us": statistics.median(wall[mode]),
            "wall_vs_off_us": paired(wall[mode], wall["off"]),
            "cpu_median_us": statistics.median(cpu[mode]),
            "cpu_vs_off_us": paired(cpu[mode], cpu["off"]),
            "requests": SITU_BLOCK * SITU_ROUNDS,
        }
        for mode in MODES
    }


# ---------------------------------------------------------------- report


def table(recorder: dict[str, Any], situ: dict[str, Any]) -> str:
    head = ("mode", "recorder", "added", "p99", "in situ wall", "vs off", "in situ CPU", "vs off")
    units = ("", "(us)", "(us)", "(us)", "(us/req)", "(us)", "(us/req)", "(us)")
    widths = (15, 10, 8, 9, 14, 9, 13, 9)

    def row(cells: Sequence[str]) -> str:
        return "".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [row(head), row(units)]
    for mode in ("baseline", *MODES):
        r, s = recorder[mode], situ.get(mode)
        cells = [mode, f"{r['median_us']:.1f}", f"{r['added_median_us']:.1f}", f"{r['p99_us']:.0f}"]
        if s is None:
            cells += ["-"] * 4
        else:
            cells += [
                f"{s['wall_median_us']:.0f}",
                f"{s['wall_vs_off_us']:+.0f}",
                f"{s['cpu_median_us']:.0f}",
                f"{s['cpu_vs_off_us']:+.0f}",
            ]
        lines.append(row(cells))
    return "\n".join(lines)


def main() -> None:
    key = generate_key()
    load_start = os.getloadavg()
    print("benchmarks/telemetry.py: (a) recorder hot loop ...", file=sys.stderr, flush=True)
    recorder = bench_recorder(key)
    print("benchmarks/telemetry.py: (b) in situ, BentoML app ...", file=sys.stderr, flush=True)
    situ = bench_in_situ(key)
    print(table(recorder, situ))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "bentoml": bentoml.__version__,
                    "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg(),
                },
                "recorder": recorder,
                "in_situ": situ,
                "settings": {
                    "recorder_calls": RECORDER_CALLS,
                    "in_situ_requests_per_mode": SITU_ROUNDS * SITU_BLOCK,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
