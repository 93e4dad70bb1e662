"""One attack, the utility check, and the in-process budget sweep of efficacy.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np

from bento_invguard.redteam import Plan, Reference, run

from .efficacy_apps import Config

BUDGETS = {"inversion": 2000, "label-only": 1000, "extraction": 1000}
BATCH = 20
MAX_WAIT_TOTAL = 150.0  # seconds of Retry-After a run may wait out in all
THREADS = 12
SWEEP_INVERSION = (200, 500, 1000, 2000, 4000)
SWEEP_LABEL_ONLY = (25, 50, 100, 200, 400, 1000)
SWEEP_EXTRACTION = (50, 100, 200, 500, 1000)
SWEEP_SEEDS = 5
UTILITY_KEYS = 23  # benign principals per configuration, ~20 rows each
TARGET_BLOCK_WITHIN = 200  # rows of one key


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
