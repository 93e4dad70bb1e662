"""What bento_invguard costs per call, in process, and over HTTP.

    .venv/bin/python benchmarks/overhead.py          # 1.5-2.5 minutes on 2 cores
    .venv/bin/python benchmarks/overhead.py --quick  # ~1 minute: fewer calls, 2 HTTP rounds

Everything runs on loopback in a temp dir (its own BENTOML_HOME, a trained
copy of examples/digits), with bounded loops; servers are stopped at the end.

Traffic is benign: one-row requests carrying distinct real digits in turn
(the ~1790 of the 1797 that pass the policy), from 16 keys (principals) per
tier, so the monitor sees no probing and the rate limiter counts many
principals. The copy's policy keeps the example's rate-limit windows but lifts
their amounts out of reach (the windows are still counted on every request; a
throughput run would otherwise measure only 429s).

- A1, hot loop (``support/hotloop.py``): the guard exactly as ``@protect``
  installs it, around a minimal ASGI app, guarded and unguarded calls
  alternating; also the foundation's controls only, the middleware alone and
  the ``@guard`` wrapper alone. Caches stay warm: the floor of the cost.
- A2, in situ (``support/insitu.py``): a ``@protect`` BentoML app and its
  unguarded twin in this process, through Starlette's TestClient; timers
  record the guard's middleware layer (it includes receiving the body, ~30 us)
  and the API function, and a separate pass times the guard's steps.
- HTTP (``support/http_legs.py``): ``bentoml serve`` of the example, of its
  unguarded twin and of the foundation's controls only, one worker each;
  requests per second, their ratio to the unguarded server, latency and the
  server's CPU time per request.

Tables on stdout; every figure, the machine and the git commit in
``benchmarks/results/overhead.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

# support.example points BENTOML_HOME at a scratch dir; it is imported before BentoML.
from support.example import (  # noqa: E402
    RATE_LIMITS,
    REPO,
    SCRATCH,
    TIERS,
    Traffic,
    load_example,
    log,
    prepare_app,
)
from support.hotloop import run_a1  # noqa: E402
from support.http_legs import LEGS, run_http  # noqa: E402
from support.insitu import run_a2  # noqa: E402
from support.report import machine, publish, table  # noqa: E402

from bento_invguard import generate_key  # noqa: E402

from support import example, hotloop, http_legs, insitu  # noqa: E402  # isort: skip

RESULTS = REPO / "benchmarks" / "results" / "overhead.json"

# Targets this benchmark reports against.
TARGET_ADDED_US = 50.0
TARGET_RPS_RATIO = 0.95
#: Whole-run budget: HTTP rounds stop early (after at least 2) rather than pass it.
BUDGET_S = 170.0


def _cmp_row(label: str, c: dict[str, Any]) -> list[str]:
    g, u = c["guarded"], c["unguarded"]
    return [
        label,
        f"{u['median_us']:.1f} / {u['p99_us']:.1f}",
        f"{g['median_us']:.1f} / {g['p99_us']:.1f}",
        f"{c['added_median_us']:.1f}",
        f"{c['added_p99_us']:.1f}",
    ]


def report(results: dict[str, Any]) -> str:
    a1, a2, http = results["a1"], results["a2"], results["http"]
    rows = [["in process, 1 row of 64", "unguarded median / p99 us",
             "guarded median / p99 us", "added median us", "added p99 us"]]  # fmt: skip
    rows += [_cmp_row(f"A1 guard pieces (hot loop), {t}", a1["end_to_end"][t]) for t in TIERS]
    rows.append(_cmp_row("A1 foundation's controls only (hot loop), partner", a1["core_partner"]))
    rows.append(_cmp_row("A1 middleware alone (hot loop)", a1["middleware_only"]))
    rows.append(_cmp_row("A1 @guard wrapper alone (hot loop), partner", a1["wrapper_only_partner"]))
    # The whole-app difference (a2[t]["app"]) is in the JSON: it carries BentoML's
    # and the TestClient's noise, and on a busy machine it is not readable.
    rows += [
        _cmp_row(
            f"A2 GuardMiddleware layer + body receive (in situ), {t}", a2[t]["middleware_layer"]
        )
        for t in TIERS
    ]
    rows += [_cmp_row(f"A2 API function (in situ), {t}", a2[t]["api_function"]) for t in TIERS]

    step_names = sorted({n for t in TIERS for n in a2[t].get("guard_steps", {})})
    step_rows = [["guard steps in situ (guarded app), median / p99 us", *step_names]]
    for t in TIERS:
        steps = a2[t].get("guard_steps", {})
        step_rows.append(
            [
                t,
                *(
                    f"{steps[n]['median_us']:.1f} / {steps[n]['p99_us']:.1f}" if n in steps else "-"
                    for n in step_names
                ),
            ]
        )

    http_rows = [["HTTP, bentoml serve, 1 worker", "rps", "ratio vs unguarded",
                  "median of round ratios", "p50 / p99 ms", "server CPU us/req"]]  # fmt: skip
    for leg in LEGS:
        h = http[leg]
        http_rows.append([
            leg.replace("_", " "),
            f"{h['rps']:.0f}",
            f"{h.get('rps_ratio', 1.0):.3f}",
            f"{h.get('round_ratio_median', 1.0):.3f}",
            f"{h['latency_ms_p50']:.2f} / {h['latency_ms_p99']:.2f}",
            f"{h['server_cpu_us_per_request']:.0f}",
        ])  # fmt: skip
    v = results["verdict"]

    def met(ok: bool) -> str:
        return "met" if ok else "MISSED"

    verdict = "\n".join(
        [
            f"- added per call, hot loop (A1, worst tier): median "
            f"{v['hot_added_median_us']:.1f} us, p99 {v['hot_added_p99_us']:.1f} us; "
            f"target <= {TARGET_ADDED_US:.0f} us: {met(v['hot_target_met'])}",
            f"- added per call inside BentoML (A2 middleware layer + API function, worst tier): "
            f"median "
            f"{v['in_bentoml_added_median_us']:.1f} us, p99 {v['in_bentoml_added_p99_us']:.1f} us; "
            f"target <= {TARGET_ADDED_US:.0f} us: {met(v['in_bentoml_target_met'])}",
            f"- HTTP rps ratio guarded/unguarded (worst tier): {v['worst_rps_ratio']:.3f}; "
            f"target >= {TARGET_RPS_RATIO}: {met(v['rps_ratio_target_met'])}; "
            f"server CPU added per request (worst tier): "
            f"{v['worst_added_server_cpu_us']:.0f} us",
        ]
    )
    if v.get("core_rps_ratio") is not None:
        verdict += (
            "\n- the foundation's controls only (no rate limits, monitor or audit; partner): "
            f"hot loop +{v['core_hot_added_median_us']:.1f} us "
            f"({met(v['core_hot_added_median_us'] <= TARGET_ADDED_US)}), "
            f"rps ratio {v['core_rps_ratio']:.3f} "
            f"({met(v['core_rps_ratio'] >= TARGET_RPS_RATIO)})"
        )
    parts = f"{table(step_rows)}\n\n" if step_names else ""
    return f"{table(rows)}\n\n{parts}{table(http_rows)}\n\n{verdict}\n"


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    hot = results["a1"]["end_to_end"].values()
    # In situ: the GuardMiddleware layer (with the body receive it takes over)
    # plus the @guard-wrapped API function; steadier than the whole-app
    # difference, which carries BentoML's and the TestClient's noise too.
    in_bentoml = [
        {
            key: results["a2"][t]["middleware_layer"][key] + results["a2"][t]["api_function"][key]
            for key in ("added_median_us", "added_p99_us")
        }
        for t in TIERS
    ]
    example_legs = [leg for leg in LEGS if leg.startswith("guarded_") and "core" not in leg]
    guarded_legs = [results["http"][leg] for leg in example_legs]
    hot_median = max(c["added_median_us"] for c in hot)
    bento_median = max(c["added_median_us"] for c in in_bentoml)
    worst_ratio = min(h["rps_ratio"] for h in guarded_legs)
    return {
        "target_added_us": TARGET_ADDED_US,
        "target_rps_ratio": TARGET_RPS_RATIO,
        "hot_added_median_us": hot_median,
        "hot_added_p99_us": max(c["added_p99_us"] for c in hot),
        "hot_target_met": hot_median <= TARGET_ADDED_US,
        "in_bentoml_added_median_us": bento_median,
        "in_bentoml_added_p99_us": max(c["added_p99_us"] for c in in_bentoml),
        "in_bentoml_target_met": bento_median <= TARGET_ADDED_US,
        "worst_rps_ratio": worst_ratio,
        "rps_ratio_target_met": worst_ratio >= TARGET_RPS_RATIO,
        "core_rps_ratio": results["http"].get("guarded_partner_core", {}).get("rps_ratio"),
        "core_hot_added_median_us": results["a1"]["core_partner"]["added_median_us"],
        "worst_added_server_cpu_us": max(
            h["added_server_cpu_us_per_request"] for h in guarded_legs
        ),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the calls, 2 rounds")
    args = parser.parse_args(argv)
    scale = 4 if args.quick else 1
    a1_pairs, a1_piece_pairs = hotloop.PAIRS // scale, hotloop.PIECE_PAIRS // scale
    a2_pairs, rounds = insitu.PAIRS // scale, 2 if args.quick else http_legs.ROUNDS
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine()}
    results["parameters"] = {
        "a1_pairs_per_tier": a1_pairs,
        "a1_piece_pairs": a1_piece_pairs,
        "a2_pairs": a2_pairs,
        "http_threads": http_legs.THREADS,
        "http_requests_per_leg": http_legs.PER_LEG,
        "http_rounds": rounds,
        "http_warmup_per_leg": http_legs.WARMUP,
        "keys_per_tier": example.KEYS_PER_TIER,
        "distinct_rows": None,  # set once the rows are loaded
        "rate_limits": RATE_LIMITS,
    }
    try:
        log("training the digits example into a temp BENTOML_HOME ...")
        app_dir, weights = prepare_app(SCRATCH)
        keys = {tier: [generate_key() for _ in range(example.KEYS_PER_TIER)] for tier in TIERS}
        os.environ["INVGUARD_KEYS"] = example.keys_env(keys)
        model, rows = load_example(app_dir, weights)
        traffic = Traffic(keys, rows)
        results["parameters"]["distinct_rows"] = len(rows)

        phases = results["phase_seconds"] = {"setup": round(time.monotonic() - started, 1)}
        deadline = started + BUDGET_S
        for name, label, run in (
            (
                "a1",
                "(a) A1: guard pieces in process",
                lambda: run_a1(app_dir, model, traffic, a1_pairs, a1_piece_pairs),
            ),
            (
                "a2",
                "(a) A2: BentoML apps in process",
                lambda: run_a2(app_dir, model, traffic, a2_pairs),
            ),
            (
                "http",
                "(b) HTTP: bentoml serve processes",
                lambda: run_http(app_dir, traffic, rounds, deadline),
            ),
        ):
            log(f"{label} ...")
            t0 = time.monotonic()
            results[name] = run()
            phases[name] = round(time.monotonic() - t0, 1)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)

    results["verdict"] = verdict(results)
    results["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    results["wall_seconds"] = round(time.monotonic() - started, 1)

    publish(report(results), results, RESULTS)


if __name__ == "__main__":
    main()
