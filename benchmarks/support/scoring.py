"""Verdicts against the benchmark's targets, and the markdown tables.

Targets:

- evasion: the guard holds when no target's attack finds an adversarial example
  (checked on the unguarded model) closer than 3x the distance the same attack
  reaches against the unguarded model with the same seed (when that baseline
  finds none, any adversarial example reaches the goal), and closer than its
  natural start (which is adversarial before any query);
- inversion: the guard holds when the judge's success stays at or below
  chance + 0.1;
- benign crowd: no principal refused or answered unlike the unguarded model,
  and at most 0.01 % of benign queries refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

EVASION_FACTOR = 3.0
INVERSION_MARGIN = 0.1
BENIGN_REFUSED_SHARE = 0.0001


def evasion_goal(result: dict[str, Any], baseline: dict[str, Any], natural_start: bool) -> bool:
    """True when this target's attack reached its goal through the guard.

    An example no closer than the attack's own natural start (a held-out input
    of another class, adversarial before any query) is no progress: not a goal.
    """
    if not result["adversarial"]:
        return False
    start = result.get("start_distance") if natural_start else None
    if start is not None and result["distance"] >= start - 1e-6:
        return False
    if not baseline["adversarial"]:
        return True
    return bool(result["distance"] < EVASION_FACTOR * baseline["distance"])


def inversion_success(results: Sequence[dict[str, Any]]) -> float:
    """Share of reconstructions the judge recognised as their target."""
    hits = [r for res in results for r in res["recognised"]]
    return sum(hits) / max(len(hits), 1)


def summarise_cell(cell: dict[str, Any], chance: float) -> dict[str, Any]:
    """Add the cell's totals, outcome and verdict (``PASS``: goal not reached)."""
    streams = cell["streams"]
    ledgers = [s["ledger"] for s in streams]
    refused: Counter[str] = Counter()
    for ledger in ledgers:
        refused.update(ledger["refused"])
    detections = [x["first_detection_row"] for x in ledgers if x["first_detection_row"]]
    totals = {
        "rows_sent": sum(x["rows_sent"] for x in ledgers),
        "probe_rows": sum(x["probe_rows"] for x in ledgers),
        "refused": dict(refused),
        "altered_rows": sum(x["altered_rows"] for x in ledgers),
        "keys_used": sum(x["keys_used"] for x in ledgers),
        "keys_blocked": sum(x["keys_blocked"] for x in ledgers),
        "first_detection_row": min(detections) if detections else None,
        "stopped": dict(Counter(x["stopped"] for x in ledgers)),
    }
    if cell["kind"] == "evasion":
        natural = cell["start"] == "natural"
        goals = [evasion_goal(s["result"], s["baseline"], natural) for s in streams]
        dist = [s["result"]["distance"] for s in streams if s["result"]["adversarial"]]
        base = [s["baseline"]["distance"] for s in streams if s["baseline"]["adversarial"]]
        fooled = sum(
            s["result"]["believed_distance"] is not None and not s["result"]["adversarial"]
            for s in streams
        )  # the attacker was told a probe crossed the boundary; it had not
        outcome = (
            f"adv {sum(s['result']['adversarial'] for s in streams)}/{len(streams)}"
            + (f" ({fooled} fooled)" if fooled else "")
            + f", L2 {_fmt(min(dist) if dist else None)}"
            + f" (bare {_fmt(min(base) if base else None)}"
            + (
                f", start {_fmt(min(s['result']['start_distance'] for s in streams))}"
                if natural
                else ""
            )
            + ")"
        )
        totals["fooled"] = fooled
        reached = any(goals)
        totals["goals_reached"] = sum(goals)
    else:
        success = inversion_success([s["result"] for s in streams])
        bare = inversion_success([s["baseline"] for s in streams])
        outcome = f"judge {success:.2f} (bare {bare:.2f}, chance {chance:.2f})"
        reached = success > chance + INVERSION_MARGIN
        totals["judge_success"] = round(success, 4)
        totals["bare_judge_success"] = round(bare, 4)
    cell.update(totals=totals, outcome=outcome, goal_reached=reached)
    cell["verdict"] = "FAIL" if reached else "PASS"
    return cell


def benign_verdict(run: dict[str, Any]) -> str:
    """``PASS`` when no principal was hit and the refused share is within target."""
    ok = run["principals_hit"] == 0 and run["refused_share"] <= BENIGN_REFUSED_SHARE
    return "PASS" if ok else "FAIL"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _refused(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def attack_table(cells: Sequence[dict[str, Any]]) -> str:
    """One row per (attack, start, way) cell."""
    rows = []
    for c in cells:
        t = c["totals"]
        rows.append(
            [
                c["attack"],
                c["start"],
                c["way"],
                len(c["streams"]),
                t["rows_sent"],
                _refused(t["refused"]),
                t["altered_rows"],
                t["keys_used"],
                t["keys_blocked"],
                t["first_detection_row"] or "-",
                c["outcome"],
                c["verdict"],
            ]
        )
    header = [
        "attack", "start", "way", "streams", "rows sent", "refused rows (reason)",
        "silenced rows", "keys", "keys blocked", "first detection", "outcome", "verdict",
    ]  # fmt: skip
    return table(header, rows)


def way_summary(cells: Sequence[dict[str, Any]]) -> str:
    """PASS count per way, over every attack and start."""
    ways: dict[str, list[str]] = {}
    for c in cells:
        ways.setdefault(c["way"], []).append(c["verdict"])
    rows = [[w, f"{v.count('PASS')}/{len(v)}"] for w, v in ways.items()]
    return table(["way", "PASS (guard holds)"], rows)


def crowd_table(runs: Sequence[dict[str, Any]]) -> str:
    """One row per benign pace."""
    rows = [
        [
            r["pace"],
            r["principals"],
            r["queries_each"],
            r["queries"],
            r["principals_hit"],
            f"{100 * r['refused_share']:.3f} %",
            _refused(r["refused_by_reason"]),
            r["altered_rows"],
            benign_verdict(r),
        ]
        for r in runs
    ]
    header = [
        "pace", "principals", "queries each", "queries", "principals refused/degraded",
        "refused share", "refused (reason)", "silenced rows", "verdict",
    ]  # fmt: skip
    return table(header, rows)
