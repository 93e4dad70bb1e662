"""What detection costs per query in process: the shared view and the per-key monitor.

One query is ``SharedView.judge`` (before the model), then ``SharedView.keep``
and ``Monitor.assess`` (after it), on memory:// state, with a view already
holding ``filled`` queries. The median over ``repeats`` queries is reported,
with the view's memory per kept query.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import numpy as np

from bento_invguard import Policy
from bento_invguard.context import QueryContext
from bento_invguard.monitor import Monitor, run_without_io
from bento_invguard.reference import Thresholds
from bento_invguard.view import SharedView
from bento_invguard.view.entries import ENTRY, table_rows
from bento_invguard.view.stores import MemoryViewStore


def _query(view: SharedView, monitor: Monitor, row: np.ndarray, who: str) -> None:
    ctx = QueryContext("predict", principal=who)
    ctx.scores = np.full((1, 10), 0.1)
    ctx.scores[0, 0] = 0.5
    judgement = run_without_io(view.judge(ctx, row))
    answers = judgement.answers([0], silent=True)
    run_without_io(view.keep(who, judgement, answers))
    run_without_io(monitor.assess(ctx, judgement.probing, judgement.repeat))


def cost(features: int, filled: int, repeats: int, size: int = 100_000) -> dict[str, Any]:
    """Median microseconds per one-row query of ``features`` values, view ``filled``."""
    rng = np.random.default_rng(0)
    policy = Policy.model_validate({"tiers": {"public": {"output": "label"}}})
    store = MemoryViewStore(size, table_rows(size))
    view = SharedView(
        Thresholds(radius=0.05 * np.sqrt(features), cluster_size=2),
        size=size,
        ttl=3600,
        store=lambda: store,
    )
    monitor = Monitor(policy)
    batch = 1000
    for start in range(0, filled, batch):  # natural-looking rows, far apart
        rows = rng.random((min(batch, filled - start), features), dtype=np.float32)
        ctx = QueryContext("predict", principal=f"fill{start}")
        judgement = asyncio.run(view.judge(ctx, rows))
        asyncio.run(view.keep(ctx.principal or "", judgement, np.zeros(len(rows), np.uint16)))
    times = []
    for i in range(repeats):
        row = rng.random((1, features), dtype=np.float32)
        started = time.perf_counter()
        _query(view, monitor, row, f"user{i % 100}")
        times.append(time.perf_counter() - started)
    return {
        "features": features,
        "kept": filled,
        "median_us": statistics.median(times) * 1e6,
        "bytes_per_kept_query": store.nbytes / size,
        "record_bytes": ENTRY.itemsize,
    }


CASES = (  # features, queries kept, queries timed, view size
    (64, 100_000, 3000, 100_000),
    (224 * 224 * 3, 2_000, 200, 100_000),
    (64, 1_000_000, 1000, 1_000_000),
)


def cost_table(quick: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """The cases above as a markdown table, and their figures; ``quick``: the first case only."""
    cases = CASES[:1] if quick else CASES
    rows = [cost(features, kept, timed, size) for features, kept, timed, size in cases]
    lines = [
        "| features | view size | kept | median per query | bytes per kept query |",
        "|---|---|---|---|---|",
    ]
    for (_, _, _, size), row in zip(cases, rows, strict=True):
        lines.append(
            f"| {row['features']} | {size:,} | {row['kept']:,} | {row['median_us']:.0f} µs "
            f"| {row['bytes_per_kept_query']:.1f} |"
        )
    return "\n".join(lines), rows


if __name__ == "__main__":
    print(cost_table()[0])
