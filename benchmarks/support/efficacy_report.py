"""efficacy.py's outputs: the markdown table, the figure of reconstructions, the targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bento_invguard.redteam.images import side_by_side, stack_rows, tile, write_png

from .efficacy_apps import ATTACKS
from .efficacy_runs import TARGET_BLOCK_WITHIN


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
    """The efficacy targets, measured, each with whether it is met.

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
