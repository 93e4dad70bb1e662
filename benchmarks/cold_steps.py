"""The guard's request-path steps timed hot, and after the caches have been evicted.

```sh
.venv/bin/python benchmarks/cold_steps.py
```

In a served worker each guard step costs several times its hot-loop figure
(insitu.py): between two requests BentoML's own work evicts the guard's code
and data from the CPU caches. This script shows the effect in one process,
without a server. Every case is timed (thread CPU time, median of many
calls) twice: hot (the case called again and again), and cold (each call
after an eviction pass that walks 8 MB of memory and runs some unrelated
Python). The query each guard step is given is made before the clock starts,
as in a worker, where the middleware made it. Besides the guard's steps it
times single NumPy and Python operations, for scale. The cold figures move by
a third from run to run, and depend on what ran just before the clock
started (the query's creation warms the allocator, so a lone ``tolist`` can
look cheaper cold than hot): read them as multiples, not as the worker's
figures, which insitu.py gives. Writes ``benchmarks/results/cold_steps.json``
(git-ignored); ~35 s.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from overhead import REPO, log, machine, publish, table
from sklearn.datasets import load_digits

from bento_invguard import Policy, hash_key
from bento_invguard.access import AccessControl
from bento_invguard.context import QueryContext
from bento_invguard.hardening import OutputHardener
from bento_invguard.keys import KeyRing
from bento_invguard.validation import InputValidator, Profile

RESULTS = REPO / "benchmarks" / "results" / "cold_steps.json"
CALLS = 2000  # per case, hot and cold
_clock = time.thread_time_ns

_junk = np.ones(8_000_000 // 8)
_records = [{"id": i, "values": [i, i + 1]} for i in range(30_000)]


def evict() -> None:
    """Walk 8 MB and run some unrelated Python, as a request's worth of BentoML does."""
    _junk.sum()
    total = 0
    for record in _records[::3]:
        total += record["id"]
    json.dumps(_records[:2000])


def timed(case: Callable[[QueryContext], Any], *, cold: bool) -> float:
    """Median µs of one call (given a new query, made before the clock starts)."""
    samples = []
    for _ in range(CALLS):
        if cold:
            evict()
        ctx = QueryContext(endpoint="predict")
        t0 = _clock()
        case(ctx)
        samples.append(_clock() - t0)
    return statistics.median(samples) / 1e3


def cases() -> dict[str, Callable[[QueryContext], Any]]:
    policy = Policy.from_file(REPO / "examples" / "digits" / "invguard.yaml")
    assert policy.input.profile is not None
    profile = Profile.load(policy.resolve(policy.input.profile))
    validator = InputValidator(policy.input, profile)
    row = load_digits().data[5:6].astype(np.float64)
    scores = np.random.default_rng(0).dirichlet(np.ones(10), size=1)
    hardener = OutputHardener()
    partner = policy.tiers["partner"]
    key = "cold-steps-partner-key"
    access = AccessControl(policy)
    access.keys = KeyRing([("bench", hash_key(key), "partner")])  # not the example's keys
    headers = {"authorization": f"Bearer {key}".encode()}
    score_list = scores[0].tolist()
    lo, hi = profile.check.lo, profile.check.hi
    flat = row.reshape(-1)
    subspace = profile.check.subspace
    assert subspace is not None and subspace._form is not None
    form, centred = subspace._form, flat - subspace.mean

    return {
        "(nothing: the timer itself)": lambda ctx: None,
        "guard: key check (AccessControl.admit)": lambda ctx: access.admit(ctx, headers),
        "guard: input checks (one digit, with the profile)": lambda ctx: validator(ctx, row),
        "guard: truncation (top-3, 2 decimals)": lambda ctx: hardener(ctx, scores, partner),
        "numpy: row >= bounds (64 values)": lambda ctx: flat >= lo,
        "numpy: np.count_nonzero(row <= bounds)": lambda ctx: np.count_nonzero(flat <= hi),
        "numpy: form.dot(row) (64 x 64)": lambda ctx: form.dot(centred),
        "numpy: np.array(list of 10 floats)": lambda ctx: np.array(score_list),
        "numpy: row.tolist() (64 values)": lambda ctx: flat.tolist(),
        "python: sorted 10 indices by value": lambda ctx: sorted(
            range(10), key=score_list.__getitem__, reverse=True
        ),
    }


def main() -> None:
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "calls": CALLS, "cases": {}}
    timer_hot = timer_cold = 0.0
    for name, case in cases().items():
        log(f"  {name}")
        hot, cold = timed(case, cold=False), timed(case, cold=True)
        if name.startswith("(nothing"):
            timer_hot, timer_cold = hot, cold
            continue
        hot, cold = hot - timer_hot, cold - timer_cold
        results["cases"][name] = {"hot_us": hot, "cold_us": cold, "ratio": cold / hot}
    rows = [["step, one call (timer's cost taken off)", "hot, µs", "cold, µs", "cold / hot"]]
    for name, r in results["cases"].items():
        rows.append([name, f"{r['hot_us']:.2f}", f"{r['cold_us']:.2f}", f"{r['ratio']:.1f}x"])
    results["timer_us"] = {"hot": timer_hot, "cold": timer_cold}
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    publish(table(rows), results, RESULTS)


if __name__ == "__main__":
    main()
