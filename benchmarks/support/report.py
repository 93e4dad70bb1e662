"""Statistics, machine description and output shared by the cost benchmarks."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def summary_us(samples_ns: list[int] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {
        "median_us": float(np.median(arr)),
        "p99_us": float(np.percentile(arr, 99)),
        "mean_us": float(arr.mean()),
        "n": int(arr.size),
    }


def compare(guarded_ns: list[int], plain_ns: list[int]) -> dict[str, Any]:
    g, p = summary_us(guarded_ns), summary_us(plain_ns)
    paired = (np.asarray(guarded_ns) - np.asarray(plain_ns)) / 1e3
    return {
        "guarded": g,
        "unguarded": p,
        "added_median_us": g["median_us"] - p["median_us"],
        "added_p99_us": g["p99_us"] - p["p99_us"],
        "paired_diff_median_us": float(np.median(paired)),
    }


def machine() -> dict[str, Any]:
    import bentoml

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "bentoml": bentoml.__version__,
        "numpy": np.__version__,
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        "source": git_state(),
    }


def git_state() -> dict[str, Any]:
    """Which code was measured: the commit, and whether the tree had local changes."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10
        )
        return out.stdout

    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "changed_files": [
            line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        ],
    }


def publish(text: str, results: dict[str, Any], path: Path) -> None:
    """Print a benchmark's tables and write its figures as JSON (git-ignored)."""
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {path.relative_to(REPO)} ({results['wall_seconds']} s)")


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)
