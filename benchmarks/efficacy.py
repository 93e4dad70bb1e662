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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small products; 2 cores are shared

import httpx
import numpy as np
import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from support.serving import (  # noqa: E402
    copy_example,
    launch_serve,
    load_module,
    server_env,
    stop_process_tree,
    train,
    wait_ready,
)

from bento_invguard import generate_key  # noqa: E402
from bento_invguard.redteam import Plan, Reference, run  # noqa: E402
from bento_invguard.redteam.images import side_by_side, stack_rows, tile, write_png  # noqa: E402

RESULTS = BENCH_DIR / "results" / "efficacy.json"
FIGURE = REPO / "docs" / "images" / "inversion.png"
BUDGETS = {"inversion": 2000, "label-only": 1000, "extraction": 1000}
BATCH = 20
MAX_WAIT_TOTAL = 150.0  # seconds of Retry-After a run may wait out in all
THREADS = 12
SWEEP_INVERSION = (200, 500, 1000, 2000, 4000)
SWEEP_LABEL_ONLY = (25, 50, 100, 200, 400, 1000)
SWEEP_EXTRACTION = (50, 100, 200, 500, 1000)
SWEEP_SEEDS = 5
UTILITY_KEYS = 23  # benign principals per configuration, ~20 rows each
TARGET_BLOCK_WITHIN = 200  # rows of one key (project issue 7)

ART_POSTPROCESSORS = {
    "art_rounded": "Rounded()",
    "art_reverse_sigmoid": "ReverseSigmoid()",
    "art_gaussian_noise": "GaussianNoise()",
    "art_class_labels": "ClassLabels()",
    "art_class_labels_per_row": "ClassLabels()",  # applied to one row at a time, see below
}

PLAIN_SERVICE = '''"""The digits model unguarded, and behind ART's output postprocessors."""

import bentoml
import numpy as np
from art.defences.postprocessor import ClassLabels, GaussianNoise, ReverseSigmoid, Rounded
from model import MODEL_NAME, SoftmaxModel

POST = {POSTPROCESSORS}


@bentoml.service(name="digits_plain")
class Plain:
    stored_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.model = SoftmaxModel.load(self.stored_model.path_of("weights.npz"))

    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)

{ENDPOINTS}
'''

ART_ENDPOINT = """    @bentoml.api
    def {name}(self, x: np.ndarray) -> np.ndarray:
        return POST["{name}"](self.model.predict_proba(x))
"""
# ART 1.20.1's ClassLabels sets ``labels[:, argmax_of_every_row] = 1``: with more
# than one row per call, every row gets a 1 in the predicted class of every row
# of the batch. The per-row endpoint calls it one row at a time (what it means to do).
ART_PER_ROW = """    @bentoml.api
    def {name}(self, x: np.ndarray) -> np.ndarray:
        scores = self.model.predict_proba(x)
        return np.vstack([POST["{name}"](row[np.newaxis]) for row in scores])
"""

OUTPUTS_POLICY: dict[str, Any] = {
    "version": 1,
    "keys_from": {"env": "INVGUARD_KEYS"},
    "anonymous_tier": None,
    "storage": "memory://",
    "tiers": {
        "label": {"output": "label", "endpoints": ["predict"]},
        "top_k": {"output": "top_k", "k": 3, "decimals": 2, "endpoints": ["predict"]},
        "rounded": {"output": "rounded", "decimals": 2, "endpoints": ["predict"]},
    },
    "input": {"shape": [64], "dtype": "float", "min": 0.0, "max": 16.0, "max_rows": 256},
    "monitor": {"enabled": False},
}


def _per_row(name: str) -> str:
    return ", one row per call" if name.endswith("_per_row") else ""


@dataclass(frozen=True)
class Config:
    """One defence: which server, which path, which tier's key."""

    name: str
    server: str  # plain, outputs, default
    path: str
    tier: str | None  # None: no key (unguarded server)
    what: str


CONFIGS = (
    Config("none", "plain", "/predict", None, "no guard"),
    Config("label", "outputs", "/predict", "label", "guard: output label alone"),
    Config("top_k", "outputs", "/predict", "top_k", "guard: output top_k (3, 2 decimals) alone"),
    Config("rounded", "outputs", "/predict", "rounded", "guard: output rounded (2) alone"),
    Config("monitor", "default", "/predict", "monitor", "guard: monitor alone (full scores)"),
    Config("default_public", "default", "/predict", "public", "default policy, public key"),
    Config("default_partner", "default", "/predict", "partner", "default policy, partner key"),
    Config("default_trusted", "default", "/predict", "trusted", "default policy, trusted key"),
    *(
        Config(name, "plain", f"/{name}", None, f"ART {call}" + _per_row(name))
        for name, call in ART_POSTPROCESSORS.items()
    ),
)
ATTACKS = ("inversion", "label-only", "extraction")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ servers


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def write_apps(app_dir: Path) -> None:
    """The unguarded/ART service, the outputs-only service and policy, the monitor tier."""
    post = "{\n" + "".join(f'    "{n}": {c},\n' for n, c in ART_POSTPROCESSORS.items()) + "}"
    endpoints = "\n".join(
        (ART_PER_ROW if n.endswith("_per_row") else ART_ENDPOINT).format(name=n)
        for n in ART_POSTPROCESSORS
    )
    plain = PLAIN_SERVICE.replace("{POSTPROCESSORS}", post).replace("{ENDPOINTS}", endpoints)
    (app_dir / "efficacy_plain.py").write_text(plain)
    service = (app_dir / "service.py").read_text()
    (app_dir / "efficacy_outputs.py").write_text(
        service.replace('"invguard.yaml"', '"policy_outputs.yaml"')
    )
    (app_dir / "policy_outputs.yaml").write_text(yaml.safe_dump(OUTPUTS_POLICY))
    policy = yaml.safe_load((app_dir / "invguard.yaml").read_text())
    policy["tiers"]["monitor"] = {"output": "full", "endpoints": ["predict"]}
    (app_dir / "invguard.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))


def start(name: str, target: str, app_dir: Path, env: dict[str, str], root: Path) -> Server:
    log_path = root / f"{name}.log"
    proc, url = launch_serve(app_dir, env, log_path, target)
    return Server(name, url, proc, log_path)


# ------------------------------------------------------------------ runs


@dataclass
class Keys:
    """Fresh keys per server: ``take(config)`` hands out a new principal of the config's tier."""

    by_server: dict[str, dict[str, str]]

    def take(self, config: Config) -> str | None:
        if config.tier is None:
            return None
        key = generate_key()
        pool = self.by_server.setdefault(config.server, {})
        pool[f"it-{config.tier}-{len(pool)}"] = key
        return key


def plan_keys(keys: Keys) -> dict[tuple[str, str], str | None]:
    """One key per (configuration, attack), made before the servers start."""
    return {(c.name, a): keys.take(c) for c in CONFIGS for a in ATTACKS}


def attack_once(
    config: Config,
    attack: str,
    url: str,
    key: str | None,
    reference: Reference,
    truth: Any,
) -> dict[str, Any]:
    plan = Plan(
        attack=attack,  # type: ignore[arg-type]
        url=url + config.path,
        key=key,
        budget=BUDGETS[attack],
        shape=(64,),
        low=0.0,
        high=16.0,
        batch=BATCH,
        max_wait=5.0,
        max_wait_total=MAX_WAIT_TOTAL,
    )
    report, result = run(plan, reference, holdout_labels=truth)
    report["reconstructions"] = (
        result.reconstructions.tolist() if result.reconstructions is not None else None
    )
    return report


def utility(
    config: Config,
    url: str,
    keys: list[str | None],
    x: np.ndarray,
    truth: np.ndarray,
    batch: int = 1,
) -> dict[str, Any]:
    """Top-1 agreement with the unguarded model, ``batch`` rows per request, keys in turn.

    Each benign key sends about 20 distinct natural digits, slower than any
    tier's limit. A refused request counts all its rows as disagreements.
    """
    agree, refused = 0, 0
    reasons: dict[str, int] = {}
    with httpx.Client(timeout=15.0) as client:
        for n, i in enumerate(range(0, len(x), batch)):
            rows, key = x[i : i + batch], keys[n % len(keys)]
            headers = {"authorization": f"Bearer {key}"} if key else {}
            response = client.post(url + config.path, json={"x": rows.tolist()}, headers=headers)
            if response.status_code != 200:
                refused += len(rows)
                reason = str(response.json().get("error", response.status_code))
                reasons[reason] = reasons.get(reason, 0) + len(rows)
                continue
            answers = np.asarray(response.json(), dtype=np.float64)
            agree += int((answers.argmax(axis=1) == truth[i : i + batch]).sum())
    return {
        "agreement": agree / len(x),
        "rows": len(x),
        "batch": batch,
        "refused": refused,
        "reasons": reasons,
    }


def sweep(model: Any, reference: Reference) -> dict[str, dict[int, float]]:
    """Leakage against budget, unguarded, in process (httpx mock transport), 5 seeds each.

    Inversion against full scores, label-only against labels: how many
    queries each needs, to size budgets.
    """
    from bento_invguard import truncate

    def client(mode: str) -> httpx.Client:
        def answer(request: httpx.Request) -> httpx.Response:
            x = np.asarray(json.loads(request.content)["x"], dtype=np.float64)
            return httpx.Response(200, json=truncate(model.predict_proba(x), mode).tolist())

        return httpx.Client(transport=httpx.MockTransport(answer))

    def offline(rows: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_proba(rows).argmax(axis=1))

    out: dict[str, dict[int, float]] = {}
    for attack, mode, budgets in (
        ("inversion", "full", SWEEP_INVERSION),
        ("label-only", "label", SWEEP_LABEL_ONLY),
        ("extraction", "label", SWEEP_EXTRACTION),
    ):
        out[attack] = {}
        for budget in budgets:
            scores = []
            for seed in range(SWEEP_SEEDS):
                plan = Plan(
                    attack=attack,  # type: ignore[arg-type]
                    url="http://model.test/predict",
                    budget=budget,
                    shape=(64,),
                    low=0.0,
                    high=16.0,
                    seed=seed,
                )
                report, _ = run(plan, reference, client=client(mode), holdout_labels=offline)
                scores.append(report["leakage"]["score"])
            out[attack][budget] = float(np.mean(scores))
    return out


# ------------------------------------------------------------------ output


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| configuration | inversion leakage | inversion run | label-only leakage "
        "| label-only run | extraction agreement (public rows alone) | extraction run "
        "| utility (top-1 agreement) | utility, 20-row requests |"
    )
    lines = [head, "|" + " --- |" * 9]
    for r in rows:
        cells = [r["config"]]
        for attack in ATTACKS:
            rep = r["attacks"][attack]
            leak = rep["leakage"]
            cell = f"{leak['score']:.2f}" if leak else "n/a"
            if leak and "public_baseline" in leak:
                cell += f" ({leak['public_baseline']:.2f})"
            cells.append(cell)
            cells.append(_stopped(rep))
        for u in (r["utility"], r["utility_batched"]):
            refused = f" ({u['refused']} refused)" if u["refused"] else ""
            cells.append(f"{100 * u['agreement']:.1f} %{refused}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stopped(rep: dict[str, Any]) -> str:
    q = rep["queries"]
    why = {"labels_only": "gave up (labels)", "rate_limited": "rate limited"}.get(
        rep["stopped"], rep["stopped"]
    )
    if rep["stopped"] == "blocked":
        why = f"blocked at {q['blocked_at']}"
    text = f"{why}, {q['answered']} answered"
    if q["degraded_at"] is not None:
        text += f", degraded at {q['degraded_at']}"
    if q["first_rate_limited_at"] is not None:
        text += f", 429 from {q['first_rate_limited_at']}"
    return text


def figure(rows: dict[str, dict[str, Any]], path: Path) -> None:
    """Left: no guard (inversion, label-only). Right: default policy (trusted, public)."""

    def grid(config: str, attack: str) -> np.ndarray:
        rec = rows[config]["attacks"][attack]["reconstructions"]
        images = list(np.asarray(rec)) if rec is not None else [np.full(64, np.nan)] * 10
        return tile(images, shape=(8, 8), columns=10, scale=6, stretch=True)

    left = stack_rows([grid("none", "inversion"), grid("none", "label-only")])
    right = stack_rows([grid("default_trusted", "inversion"), grid("default_public", "label-only")])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, side_by_side([left, right], gap=16))


def targets(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, measured, each with whether it is met.

    "Far above chance": at least 5x chance (0.5 for 10 classes). "At chance":
    within 0.1 of chance (inversion, label-only) or of a constant copy's
    agreement (extraction). Extraction also reports its gain over a copy of
    the attacker's public rows with their true labels (no query); the target
    is judged on the agreement itself, not on the gain. The trusted target
    counts inversion and label-only (the attacks that reconstruct inputs).
    """

    def leak(config: str, attack: str) -> dict[str, Any]:
        rep = rows[config]["attacks"][attack]
        score = rep["leakage"]["score"]
        floor = rep["leakage"].get("chance", rep["leakage"].get("baseline", 0.0))
        return {
            "score": score,
            "chance": floor,
            "gain_over_public": rep["leakage"].get("gain_over_public"),
            "at_chance": score <= floor + 0.1,
            "blocked_at": rep["queries"]["blocked_at"],
            "blocked_within_200": (rep["queries"]["blocked_at"] or 10**9) <= TARGET_BLOCK_WITHIN,
        }

    unguarded = {a: leak("none", a) for a in ("inversion", "label-only")}
    public = {a: leak("default_public", a) for a in ATTACKS}
    trusted = {a: leak("default_trusted", a) for a in ATTACKS}
    utility = rows["default_public"]["utility"]
    return {
        "unguarded_inversion_far_above_chance": {
            "met": all(v["score"] >= 5 * v["chance"] for v in unguarded.values()),
            "measured": unguarded,
        },
        "default_public_leakage_at_chance": {
            "met": all(v["at_chance"] for v in public.values()),
            "measured": public,
        },
        "default_public_blocked_within_200": {
            "met": all(v["blocked_within_200"] for v in public.values()),
        },
        "default_public_top1_agreement_100": {
            "met": utility["agreement"] == 1.0,
            "measured": utility,
        },
        "trusted_monitor_blocks_before_success": {
            "met": all(
                trusted[a]["blocked_at"] is not None and trusted[a]["at_chance"]
                for a in ("inversion", "label-only")
            ),
            "measured": trusted,
        },
    }


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()
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


def _git(*argv: str) -> str:
    try:
        out = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


if __name__ == "__main__":
    main()
