"""The run's report: a few readable lines, or JSON; files (report, PNG grid) in an output folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .images import tile, write_png


def write_image(
    path: Path,
    reconstructions: np.ndarray,
    *,
    shape: tuple[int, int],
    low: float,
    high: float,
) -> None:
    """One row of reconstructions (one tile per target), gray over ``[low, high]``."""
    columns = max(1, len(reconstructions))
    grid = tile(list(reconstructions), shape=shape, columns=columns, scale=8, low=low, high=high)
    write_png(path, grid)


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.write_text(json.dumps(report, indent=1) + "\n")


def render(report: dict[str, Any]) -> str:
    """The report as a few aligned lines for a terminal."""
    q = report["queries"]
    rejected = q["rejected"]
    why = ", ".join(f"{reason} {rows}" for reason, rows in rejected.items())
    lines = [
        f"invguard attack {report['attack']} -> {report['url']}",
        _line(
            "queries",
            f"sent {q['sent']} in {q['requests']} requests, answered {q['answered']}, "
            f"rejected {q['rejected_total']}" + (f" ({why})" if why else ""),
        ),
        _line("budget", f"{report['budget']} rows answered or refused (429s not counted)"),
        _line("defences", _defences(q)),
        _line("answers", q["answers"]),
        _line("stopped", report["stopped"] + _detail(report.get("stop_detail", ""))),
        _line("leakage", _leakage(report)),
    ]
    evaluation = report.get("evaluation")
    if evaluation:
        lines.append(
            _line(
                "copy",
                f"accuracy {evaluation['copy_accuracy']:.3f} on {evaluation['held_out_rows']} "
                "held-out reference rows (true labels)",
            )
        )
    if report.get("image"):
        lines.append(_line("image", str(report["image"])))
    if report.get("report_file"):
        lines.append(_line("report", str(report["report_file"])))
    for note in report["notes"]:
        lines.append(_line("note", note))
    return "\n".join(lines)


def _line(name: str, text: str) -> str:
    return f"  {name:<9} {text}"


def _detail(detail: str) -> str:
    return f" ({detail})" if detail else ""


def _defences(q: dict[str, Any]) -> str:
    def at(value: int | None) -> str:
        return f"at query {value}" if value is not None else "no"

    return (
        f"rate limited: {at(q['first_rate_limited_at'])}; "
        f"degraded to labels: {at(q['degraded_at'])}; blocked: {at(q['blocked_at'])}"
    )


def _leakage(report: dict[str, Any]) -> str:
    leak = report.get("leakage")
    if leak is None:
        return "not scored"
    if report["attack"] == "extraction":
        return (
            f"{leak['score']:+.3f} gain: the copy agrees {leak['agreement']:.3f} with the "
            f"endpoint on {leak['rows']} held-out rows, a copy of the attacker's own labelled "
            f"rows alone {leak['public_baseline']:.3f} (a constant copy: {leak['baseline']:.3f})"
        )
    n = len(leak["recognised"])
    return (
        f"{leak['score']:.3f} of {n} reconstruction(s) recognised by the judge "
        f"(chance {leak['chance']:.3f}; judge's mean probability of the target "
        f"{leak['target_probability']:.3f})"
    )
