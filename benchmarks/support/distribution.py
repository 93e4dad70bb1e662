"""The per-key distribution signal against extraction streams, and its cost.

:func:`report` (``efficacy.py --distribution``) runs, on digits and MNIST, the
monitor with a distribution reference fitted on half the held-out split and
calibrated to the policy's false-positive rate, over:

- the streams of :mod:`.distribution_streams` (uniform, blends of 2 and 3,
  Jacobian augmentation, out-of-domain images) and of ART
  (:mod:`.distribution_art`), each on one key and rotated over 5 and 10 keys:
  the row (over all keys) at which a key is first flagged or blocked, with the
  whole monitor and with the distribution signal alone (no boundary signal,
  every row answered);
- the same rotated streams diluted in benign traffic (:func:`mixed`);
- the benign crowd: principals each sending 300 natural held-out rows (never
  seen by the profile or the reference), and how many of them are flagged;
- the cost of the signal per one-row query (:func:`cost`).

Rows the reference profile refuses are counted as the service counts them
(``observe_refused``); the others are assessed with the model's answer, one
row per query.
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
from bento_invguard.monitor.crowd import Crowd

from .datasets import Dataset
from .distribution_streams import KINDS, stream


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
        rows = stream(kind, data, setup.reference_rows, rng)
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


def cost(data: Dataset, repeats: int = 7, number: int = 2000) -> dict[str, float]:
    """Microseconds per one-row query of what the signal adds to the monitor: the row's
    statistics, the key's and the crowd's running sums, the crowd's direction and the
    key's score (min over ``repeats``)."""
    signal = DistributionReference.fit(Profile.fit(data.x_train), data.x_test).signal()
    history, crowd, row, decay = History(64), Crowd(), data.x_test[:1], signal.decay

    def per_row() -> None:
        stats = signal.statistics(row)
        history.add_statistics(stats, decay)
        crowd.add(stats)
        signal.score(history.running, history.running_rows, crowd.direction(signal))

    per_row()
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
    """Both data sets: every stream on 1, 5 and 10 keys, ART's streams, rotated streams
    amid benign traffic, the benign crowd (100 principals x 300 queries; 30 with
    ``quick``) and the cost per one-row query."""
    import tempfile

    from .datasets import NAMES
    from .distribution_art import art_table, load

    principals = 30 if quick else 100
    figures: dict[str, Any] = {}
    streams = [
        "| data set | stream | keys | flagged at row | signal alone | reasons |",
        "|---|---|---:|---:|---:|---|",
    ]
    amid = [
        "| data set | stream | attacker keys | benign rows per attacker row "
        "| flagged at attacker row | benign principals flagged |",
        "|---|---|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in NAMES:
            data = load(name)
            setup = prepare(data, Path(tmp))
            rows = table(data, Path(tmp), principals=principals)
            rows[-1:-1] = art_table(setup, (1, 10))
            rng = np.random.default_rng(3)
            diluted = [
                {"stream": kind}
                | mixed(setup, stream(kind, data, setup.reference_rows, rng), 10, 20, share, rng)
                for kind in ("blend2", "blend3", "jacobian")
                for share in (1, 4)
            ]
            figures[name] = {"streams": rows, "mixed": diluted, "cost": cost(data)}
            streams += [_stream_line(name, r) for r in rows]
            amid += [
                f"| {name} | {r['stream']} | {r['keys']} | {r['share']} "
                f"| {_row(r['flagged_at_row'])} | {r['flagged_users']} of {r['users']} |"
                for r in diluted
            ]
    costs = ", ".join(
        f"{n}: {f['cost']['us_per_row']:.1f} us ({f['cost']['features']:.0f} features)"
        for n, f in figures.items()
    )
    text = "\n".join([*streams, "", *amid, "", f"Per one-row query (min of repeats): {costs}."])
    return text, figures


def _stream_line(name: str, r: dict[str, Any]) -> str:
    if r["stream"] == "benign":
        return (
            f"| {name} | benign, {r['queries']} natural queries each | {r['keys']} "
            f"| {r['flagged_principals']} flagged | | |"
        )
    return (
        f"| {name} | {r['stream']} | {r['keys']} | {_row(r['flagged_at_row'])} "
        f"| {_row(r['alone'])} | {r['reasons']} |"
    )


def _row(at: int | None) -> str:
    return "-" if at is None else str(at)
