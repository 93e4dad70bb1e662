"""The per-key distribution signal against synthetic extraction streams, and its cost.

:func:`table` runs, for a data set, the monitor with a distribution reference
(fitted on half the held-out split, calibrated to the policy's false-positive
rate) over:

- synthetic streams an extraction attacker sends: uniform draws over the input
  box, blends of 2 and 3 natural inputs, Jacobian augmentation (Papernot et al.
  2017: a step of ``0.1 x range`` along the sign of the served model's
  gradient, from natural seeds), and out-of-domain natural images (patches of
  scikit-learn's sample photographs, resized to the input);
- each on one key and rotated over 5 and 10 keys: the row (over all keys) at
  which the first key is flagged or blocked, within 500 rows;
- the benign crowd: principals each sending 300 natural held-out rows (never
  seen by the profile or the reference), and how many of them are flagged.

Rows the reference profile refuses are counted as the service counts them
(``observe_refused``); the others are assessed with the model's answer, one
row per query. :func:`cost` times the per-row statistic and update.
"""

from __future__ import annotations

import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bento_invguard import Policy, Profile
from bento_invguard.context import QueryContext
from bento_invguard.monitor import DistributionReference, History, Monitor, run_without_io
from bento_invguard.redteam.common import InputSpace
from bento_invguard.redteam.strategies import knockoff_rows

from .datasets import Dataset

KINDS = ("uniform", "blend2", "blend3", "jacobian", "out_of_domain")
BUDGET = 500


@dataclass(frozen=True)
class Setup:
    """A data set's monitor with a fitted distribution reference, and natural rows that
    neither the profile nor the reference saw."""

    data: Dataset
    policy: Policy
    alone: Policy  # the distribution signal alone: boundary hugging off, every row answered
    profile: Profile
    reference_rows: np.ndarray
    natural: np.ndarray


def prepare(data: Dataset, workdir: Path, seed: int = 0) -> Setup:
    """Fit the reference on half the held-out split, calibrated to the policy's rate."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.x_test))
    reference_rows = data.x_test[order[: len(order) // 2]]
    natural = data.x_test[order[len(order) // 2 :]]
    policy = _policy(data)
    profile = Profile.fit(data.x_train).calibrated(policy.monitor.target_false_positive_rate)
    reference = DistributionReference.fit(
        profile,
        reference_rows,
        target_false_positive_rate=policy.monitor.target_false_positive_rate,
    )
    path = reference.save(workdir / f"{data.name}.distribution.json")
    alone = {"boundary_margin": 1e-12}
    return Setup(
        data, _policy(data, path), _policy(data, path, alone), profile, reference_rows, natural
    )


def table(
    data: Dataset,
    workdir: Path,
    principals: int = 100,
    queries: int = 300,
    keys: tuple[int, ...] = (1, 5, 10),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per stream (and key count): rows to the first flag, and the benign crowd."""
    setup = prepare(data, workdir, seed)
    rng = np.random.default_rng(seed + 1)
    out: list[dict[str, Any]] = []
    for kind in KINDS:
        rows = _stream(kind, data, setup.reference_rows, rng)
        for k in keys:
            out.append(flags(setup, kind, rows, k))
    out.append(benign(setup, principals, queries, rng))
    return out


def benign(setup: Setup, principals: int, queries: int, rng: np.random.Generator) -> dict[str, Any]:
    """Principals each sending ``queries`` natural rows: how many are flagged."""
    mon = Monitor(setup.policy)
    flagged = 0
    for p in range(principals):
        rows = setup.natural[rng.integers(0, len(setup.natural), queries)]
        flagged += first_flag(setup, rows, 1, f"user{p}", mon)[0] is not None
    return {
        "stream": "benign",
        "keys": principals,
        "queries": queries,
        "flagged_principals": flagged,
    }


def cost(data: Dataset, workdir: Path, repeats: int = 7, number: int = 2000) -> dict[str, float]:
    """Microseconds per one-row query: the statistics of the row plus the running update
    (min over ``repeats``)."""
    profile = Profile.fit(data.x_train)
    reference = DistributionReference.fit(profile, data.x_test)
    history = History(64)
    row = data.x_test[:1]
    stats = reference.statistics(row)
    decay = reference.decay
    history.add_statistics(stats, decay)

    def per_row() -> None:
        history.add_statistics(reference.statistics(row), decay)
        reference.score(history.running, history.running_rows)

    times = timeit.repeat(per_row, repeat=repeats, number=number)
    return {"features": float(data.features), "us_per_row": min(times) / number * 1e6}


def _policy(
    data: Dataset, distribution: Path | None = None, settings: dict[str, Any] | None = None
) -> Policy:
    monitor: dict[str, Any] = {} if distribution is None else {"distribution": str(distribution)}
    monitor |= settings or {}
    return Policy.model_validate(
        {
            "tiers": {"public": {}},
            "input": {"shape": [data.features], "min": data.low, "max": data.high},
            "monitor": monitor,
        }
    )


def _stream(kind: str, data: Dataset, natural: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, span = BUDGET, data.high - data.low
    if kind == "uniform":
        return rng.uniform(data.low, data.high, (n, data.features))
    if kind.startswith("blend"):
        k = int(kind[-1])
        weights = rng.dirichlet(np.ones(k), n)
        mixed: np.ndarray = (
            natural[rng.integers(0, len(natural), (n, k))] * weights[:, :, None]
        ).sum(1)
        return mixed
    if kind == "jacobian":  # rounds 1..4 of augmentation, as the substitute's set grows
        points = natural[rng.integers(0, len(natural), n)]
        rounds = rng.integers(1, 5, n)
        coef = data.model.coef / data.model.scale
        for r in range(1, 5):
            probs = data.model.predict_proba(points)
            label = probs.argmax(axis=1)
            gradient = coef[label] - probs @ coef  # d log p(label) / dx of the softmax model
            step = np.where((rounds >= r)[:, None], 0.1 * span * np.sign(gradient), 0.0)
            points = np.clip(points + step, data.low, data.high)
        return points
    if kind == "out_of_domain":
        space = InputSpace.from_range(data.features, data.low, data.high)
        return knockoff_rows(space, n, rng, low=data.low, high=data.high)
    raise ValueError(f"unknown stream {kind!r}")


def flags(setup: Setup, stream: str, rows: np.ndarray, keys: int) -> dict[str, Any]:
    """The row at which the monitor first flags a key, and at which the distribution
    signal alone does (every row answered, none refused by the profile)."""
    at, why = first_flag(setup, rows, keys)
    alone = first_flag(setup, rows, keys, mon=Monitor(setup.alone), refuse=False)[0]
    return {"stream": stream, "keys": keys, "flagged_at_row": at, "reasons": why, "alone": alone}


def first_flag(
    setup: Setup,
    rows: np.ndarray,
    keys: int,
    name: str = "attacker",
    mon: Monitor | None = None,
    refuse: bool = True,
) -> tuple[int | None, str]:
    """Send ``rows`` one per query over ``keys`` keys in turn (a fresh monitor unless
    ``mon``; rows the profile refuses are counted as refused if ``refuse``): the row
    (1-based) at which a key is first flagged or blocked, and why."""
    mon = Monitor(setup.policy) if mon is None else mon
    for i, row in enumerate(rows):
        ctx = send(setup, mon, f"{name}{i % keys}", row, refuse)
        if ctx.flagged or ctx.rejection is not None:
            return i + 1, ", ".join(ctx.risk_reasons)
    return None, ""


def mixed(
    setup: Setup, rows: np.ndarray, keys: int, users: int, share: int, rng: np.random.Generator
) -> dict[str, Any]:
    """``rows`` over ``keys`` keys in turn, each row followed by ``share`` natural rows from
    ``users`` benign principals in turn: the attacker's row at which one of its keys is
    first flagged, and how many benign principals are flagged over the whole stream."""
    mon, at, flagged = Monitor(setup.policy), None, set()
    natural = setup.natural[rng.integers(0, len(setup.natural), len(rows) * share)]
    for i, row in enumerate(rows):
        ctx = send(setup, mon, f"attacker{i % keys}", row)
        if at is None and (ctx.flagged or ctx.rejection is not None):
            at = i + 1
        for j in range(i * share, (i + 1) * share):
            ctx = send(setup, mon, f"user{j % users}", natural[j])
            if ctx.flagged or ctx.rejection is not None:
                flagged.add(j % users)
    return {
        "keys": keys,
        "users": users,
        "share": share,
        "flagged_at_row": at,
        "flagged_users": len(flagged),
    }


def send(
    setup: Setup, mon: Monitor, principal: str, row: np.ndarray, refuse: bool = True
) -> QueryContext:
    """One query of one row, as the service handles it: refused by the profile (and
    counted so), or answered and assessed. Its context tells whether it was flagged."""
    ctx = QueryContext(endpoint="predict", principal=principal, tier_name="public")
    x = row[None, :]
    try:
        run_without_io(mon.check_block(ctx))
        if refuse and setup.profile.first_violation(x) is not None:
            run_without_io(mon.observe_refused(ctx, 1))
        else:
            ctx.input, ctx.scores = x, setup.data.model.predict_proba(x)
            run_without_io(mon.assess(ctx, np.zeros(1, bool), np.zeros(1, bool)))
    except Exception:  # a block: the monitor put its rejection on the context
        if ctx.rejection is None:
            raise
    return ctx


def report(quick: bool = False) -> tuple[str, dict[str, Any]]:
    """Both data sets: every stream on 1, 5 and 10 keys, ART's streams, the benign crowd
    (100 principals x 300 queries; 30 with ``quick``) and the cost per one-row query."""
    import tempfile

    from .datasets import NAMES
    from .distribution_art import art_table, load

    principals = 30 if quick else 100
    figures: dict[str, Any] = {}
    lines = [
        "| data set | stream | keys | flagged at row | signal alone | reasons |",
        "|---|---|---:|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in NAMES:
            data = load(name)
            rows = table(data, Path(tmp), principals=principals)
            rows[-1:-1] = art_table(prepare(data, Path(tmp)), (1, 10))
            figures[name] = {"streams": rows, "cost": cost(data, Path(tmp))}
            for r in rows:
                if r["stream"] == "benign":
                    lines.append(
                        f"| {name} | benign, {r['queries']} natural queries each | {r['keys']} | "
                        f"{r['flagged_principals']} flagged | | |"
                    )
                else:
                    lines.append(
                        f"| {name} | {r['stream']} | {r['keys']} | {_row(r['flagged_at_row'])} | "
                        f"{_row(r['alone'])} | {r['reasons']} |"
                    )
    costs = ", ".join(
        f"{n}: {f['cost']['us_per_row']:.1f} us ({f['cost']['features']:.0f} features)"
        for n, f in figures.items()
    )
    lines += ["", f"Per one-row query (statistics, update, score; min of repeats): {costs}."]
    return "\n".join(lines), figures


def _row(at: int | None) -> str:
    return "-" if at is None else str(at)
