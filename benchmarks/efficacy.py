"""Red-team efficacy: what the attacks of ``invguard attack`` get through each defence.

    .venv/bin/python benchmarks/efficacy.py          # ~65-75 s on 2 cores

Everything runs on loopback in a temp dir: examples/digits is copied and
trained into a temp ``BENTOML_HOME``, and three real ``bentoml serve``
processes (one worker each) answer over HTTP:

- ``plain``: the example model with no guard (``/predict``), and the same
  model behind each of ART's output postprocessors (adversarial-robustness-
  toolbox 1.20, their default settings): ``/art_rounded`` (Rounded, 3
  decimals), ``/art_reverse_sigmoid`` (ReverseSigmoid, beta 1, gamma 0.1),
  ``/art_gaussian_noise`` (GaussianNoise, scale 0.2), ``/art_class_labels``
  (ClassLabels);
- ``outputs``: the guard with one output mode per tier (``label``, ``top_k``
  k=3 with 2 decimals, ``rounded`` to 2 decimals), the monitor off, no rate
  limit, input checks without a profile: each output mode alone;
- ``default``: the example's own policy (examples/digits/invguard.yaml:
  tiers, rate limits, profile, the monitor with its defaults), plus one tier
  ``monitor`` with full scores and no rate limit: the monitor alone.

Each (configuration, attack) pair uses its own fresh key, and the pairs run
concurrently (rate-limit waits overlap; the monitor keeps state per key).
Attacks are those of ``bento_invguard.redteam`` (the code behind
``invguard attack``), driven over HTTP exactly as the command drives them:

- inversion from scores (NES, budget 2,000 rows, all 10 classes);
- label-only inversion (reverse correlation of random probes, 1,000 rows);
- extraction (a softmax-regression copy trained on the endpoint's labels of
  1,000 rows: the attacker's half of the reference, then mixes of it). Beside
  its agreement, the agreement of the same copy trained on the attacker's
  public rows with their true labels and no query (``public_baseline``): the
  endpoint leaks what the copy agrees beyond that.

The reference data is the example's held-out split (x_test, y_test: 450
digits never used to train the model). The judge that scores
reconstructions is a softmax regression trained on it; the attacker never
queried it. Extraction agreement is measured on the other half of the
reference, against the unguarded model's labels. Utility: top-1 agreement
with the unguarded model on all 450 held-out digits, one row per request,
from 23 benign keys in turn, and again with 20 rows per request from 23
other keys (one request each); refused rows count as disagreements.

In process (no server, httpx's mock transport in front of the model), a
sweep of budgets (5 seeds each) shows how many queries each attack needs
with no guard (extraction and label-only against labels).

Prints a markdown table, writes benchmarks/results/efficacy.json and
docs/images/inversion.png (reconstructions without and with the guard).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small products; 2 cores are shared

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from support.efficacy_apps import (  # noqa: E402
    ATTACKS,
    CONFIGS,
    Keys,
    Server,
    plan_keys,
    start,
    write_apps,
)
from support.efficacy_report import figure, table, targets  # noqa: E402
from support.efficacy_runs import (  # noqa: E402
    BATCH,
    BUDGETS,
    THREADS,
    UTILITY_KEYS,
    attack_once,
    sweep,
    utility,
)
from support.extras import Extra, add_options, run_selected  # noqa: E402
from support.serving import (  # noqa: E402
    copy_example,
    load_module,
    server_env,
    stop_process_tree,
    train,
    wait_ready,
)

from bento_invguard.redteam import Reference  # noqa: E402

RESULTS = BENCH_DIR / "results" / "efficacy.json"
FIGURE = REPO / "docs" / "images" / "inversion.png"
#: Further measurements, each an option that runs a support module's function
#: (see support/extras.py), e.g. Extra("--watermark", "support.watermark", "table", "...").
EXTRAS: tuple[Extra, ...] = (
    Extra("--extraction", "support.extraction", "figures", "extraction, distribution signal on"),
    Extra("--watermark", "support.watermark", "figures", "watermark: copies, independents, rates"),
    Extra("--distribution", "support.distribution", "report", "per-key distribution signal"),
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--quick", action="store_true", help="smaller runs of the options below")
    add_options(parser, EXTRAS)
    args = parser.parse_args(argv)
    if args.only_extras:
        run_selected(args, EXTRAS, RESULTS.parent)
        return
    try:
        import art  # noqa: F401
    except ImportError:
        sys.exit(
            "adversarial-robustness-toolbox is needed: pip install adversarial-robustness-toolbox"
        )
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="invguard-efficacy-"))
    servers: list[Server] = []
    try:
        app_dir = copy_example(root / "digits")
        home = root / "bentoml_home"
        home.mkdir()
        write_apps(app_dir)
        weights = train(app_dir, server_env(home, {}), root / "train.log")
        model_mod = load_module(app_dir / "model.py", "invguard_efficacy_model")
        model = model_mod.SoftmaxModel.load(str(weights))
        _, x_test, _, y_test = model_mod.load_split()
        reference = Reference(np.asarray(x_test, dtype=np.float64), np.asarray(y_test))
        truth = model.predict_proba(x_test).argmax(axis=1)

        keys = Keys({})
        attack_keys = plan_keys(keys)
        util_keys = {c.name: [keys.take(c) for _ in range(UTILITY_KEYS)] for c in CONFIGS}
        # the two utility runs go concurrently: their own keys, so neither spends the
        # other's rate limit (23 keys, ~20 rows each, is within every tier's limits)
        batch_keys = {c.name: [keys.take(c) for _ in range(UTILITY_KEYS)] for c in CONFIGS}
        targets_of = {
            "plain": "efficacy_plain:Plain",
            "outputs": "efficacy_outputs:DigitsClassifier",
            "default": "service:DigitsClassifier",
        }
        for name, target in targets_of.items():
            env = server_env(home, keys.by_server.get(name, {}))
            env["OPENBLAS_NUM_THREADS"] = "1"
            servers.append(start(name, target, app_dir, env, root))
        for s in servers:
            waited = wait_ready(s.proc, s.url, s.log_path)
            log(f"{s.name} ready in {waited:.1f} s at {s.url}")
        urls = {s.name: s.url for s in servers}

        def predict_truth(rows: np.ndarray) -> np.ndarray:
            return np.asarray(model.predict_proba(rows).argmax(axis=1))

        jobs: dict[tuple[str, str], concurrent.futures.Future[dict[str, Any]]] = {}
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            for c in CONFIGS:
                for a in ATTACKS:
                    jobs[(c.name, a)] = pool.submit(
                        attack_once,
                        c,
                        a,
                        urls[c.server],
                        attack_keys[(c.name, a)],
                        reference,
                        predict_truth,
                    )
            utils = {
                c.name: pool.submit(utility, c, urls[c.server], util_keys[c.name], x_test, truth)
                for c in CONFIGS
            }
            batched = {
                c.name: pool.submit(
                    utility, c, urls[c.server], batch_keys[c.name], x_test, truth, BATCH
                )
                for c in CONFIGS
            }
            rows = {
                c.name: {
                    "config": c.name,
                    "what": c.what,
                    "attacks": {a: jobs[(c.name, a)].result() for a in ATTACKS},
                    "utility": utils[c.name].result(),
                    "utility_batched": batched[c.name].result(),
                }
                for c in CONFIGS
            }
        elapsed = time.monotonic() - started
    finally:
        for s in servers:
            stop_process_tree(s.proc)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"kept {root}")

    swept = sweep(model, reference)
    print(table(list(rows.values())))
    print("\nLeakage against budget, no guard, in process (mean of 5 seeds):\n")
    for attack, by_budget in swept.items():
        print(f"- {attack}: " + ", ".join(f"{b} rows {v:.2f}" for b, v in by_budget.items()))
    measured = targets(rows)
    print()
    for name, target in measured.items():
        print(f"- {name}: {'met' if target['met'] else 'MISSED'}")
    figure(rows, FIGURE)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
                "git_commit": _git("rev-parse", "HEAD"),
                "changed_files": _git("status", "--porcelain").splitlines(),
                "elapsed_s": round(elapsed, 1),
                "budgets": BUDGETS,
                "batch": BATCH,
                "targets": measured,
                "sweep_in_process": swept,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    log(f"done in {elapsed:.0f} s: {RESULTS.relative_to(REPO)}, {FIGURE.relative_to(REPO)}")
    run_selected(args, EXTRAS, RESULTS.parent)


def _git(*argv: str) -> str:
    try:
        out = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
