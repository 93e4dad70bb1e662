"""Extraction through the guarded service: every query strategy, one key and rotating keys.

The attacker holds half of the held-out split with its true labels (its own
public data, the *pool*) and evaluates on the other half. It runs
:func:`bento_invguard.redteam.extract` with a strategy of
:mod:`bento_invguard.redteam.strategies` through a :class:`~support.ways.Stream`
on the label tier (``public``): one key, or a fresh key every 16 rows. Its
copy learns from the answers and from its own labelled rows. After the red
team's strategies, ART's KnockoffNets drives the same streams
(:mod:`support.art_extraction`).

The policy is the detection benchmark's (:func:`support.service.guarded_policy`)
with the monitor's per-key distribution signal on: a reference fitted on the
profile and calibrated on the held-out split (:func:`fit_distribution`).

The score is the copy's **gain**: its top-1 agreement with the unguarded
model on the evaluation half, minus the agreement of a copy of the pool
alone (what the attacker had before asking). The same stream against the
unguarded model (``bare``) shows what the answers are worth without the guard.
Target: every synthetic and out-of-domain stream ends with gain <= 0.02.

    from support.extraction import extraction_table, markdown
    rows = extraction_table("digits", budget=2000)
    print(markdown(rows))

``efficacy.py --extraction`` runs :func:`figures` (digits and MNIST).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bento_invguard import Profile
from bento_invguard.monitor import DistributionReference
from bento_invguard.redteam import (
    ExtractionSettings,
    InputSpace,
    Labelled,
    Reference,
    SoftmaxRegression,
    Stopped,
    agreement,
    extract,
)
from bento_invguard.redteam import Rejected as Skipped
from bento_invguard.redteam.strategies import STRATEGIES, Strategy

from .art_extraction import NAME as ART_NAME
from .art_extraction import run_art
from .attacks import Refused, Rejected
from .datasets import Dataset, load
from .service import BareOracle, KeyRing, fit_profile, guarded_policy, open_service
from .ways import WAYS, Stream

#: Streams the target applies to (natural data within budget is not one).
SYNTHETIC: tuple[str, ...] = ("uniform", "blend", "jacobian", "knockoff", ART_NAME)
EXTRACTION_WAYS = ("one-key", "rotate-16")
TARGET_GAIN = 0.02
TIER = "public"
SEED = 7

#: One extraction run: (dataset, stream=, own=, held=, seed=) -> agreement, stop, ledger.
Run = Callable[..., dict[str, Any]]


class StreamLabeller:
    """A :class:`~support.ways.Stream` as extraction's labeller: a refusal stops, a 422 skips."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    @property
    def remaining(self) -> int:
        """Rows the stream's budget still allows."""
        return max(0, self.stream.budget - self.stream.ledger.probe_rows)

    def ask(self, rows: np.ndarray) -> np.ndarray:
        """The stream's answers; its refusals as the red team's stop and skip."""
        try:
            return self.stream(rows)
        except Rejected as refusal:
            self.stream.ledger.stopped = "done"
            raise Skipped(str(refusal) or "invalid_input") from None
        except Refused as refusal:
            raise Stopped(str(refusal) or "refused") from None


def attacker_split(d: Dataset, seed: int = SEED) -> tuple[Labelled, np.ndarray]:
    """The attacker's labelled pool and its evaluation rows (halves of the held-out split)."""
    split = Reference(d.x_test, d.y_test).split(seed)
    return Labelled(split.pool_x, split.pool_y), split.held_x


def own_baseline(d: Dataset, own: Labelled, held: np.ndarray) -> float:
    """Agreement with the served model of a copy of the attacker's own labelled rows alone."""
    copy = SoftmaxRegression(d.classes).fit(own.x, own.y)
    return agreement(copy.predict(held), d.model.predict_proba(held).argmax(axis=1))


def run_one(
    d: Dataset, *, strategy: Strategy, stream: Stream, own: Labelled, held: np.ndarray, seed: int
) -> dict[str, Any]:
    """One extraction stream; the copy's agreement on ``held`` (labelled by the bare model)."""
    space = InputSpace.from_rows(d.x_test, d.low, d.high)
    settings = ExtractionSettings(strategy, batch=20, seed=seed, low=d.low, high=d.high)
    result = extract(StreamLabeller(stream), space, own.x, settings, own)
    truth = d.model.predict_proba(held).argmax(axis=1)
    score = agreement(result.copy.predict(held), truth) if result.copy is not None else None
    return {"agreement": score, "stopped": result.stopped, "ledger": stream.ledger.as_dict()}


def extraction_table(
    name: str,
    *,
    budget: int = 2000,
    strategies: tuple[Strategy, ...] = STRATEGIES,
    ways: tuple[str, ...] = EXTRACTION_WAYS,
    seed: int = SEED,
    distribution: bool = True,
    art: bool = True,
    **monitor_overrides: Any,
) -> list[dict[str, Any]]:
    """One row per (strategy, way) on data set ``name``: gain guarded and bare, guard's actions.

    With ``distribution`` the monitor's per-key distribution signal is on
    (``monitor.distribution``, a reference from :func:`fit_distribution`); with
    ``art`` ART's KnockoffNets (:mod:`support.art_extraction`) runs after the
    red team's strategies."""
    d = load(name)
    own, held = attacker_split(d, seed)
    base = own_baseline(d, own, held)
    ring = KeyRing({TIER: 2 * budget + 500})
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        profile = fit_profile(d, Path(folder))
        if distribution:
            monitor_overrides["distribution"] = str(fit_distribution(d, profile))
        policy = guarded_policy(d, profile, ring.entries(), **monitor_overrides)
        runs: list[tuple[str, Run]] = [(s, partial(run_one, strategy=s)) for s in strategies]
        if art:
            runs.append((ART_NAME, run_art))
        for label, run in runs:
            ring.reset()
            bare_stream = _stream(BareOracle(d.model, ring), ring, d, "one-key", budget, seed)
            bare = run(d, stream=bare_stream, own=own, held=held, seed=seed)
            for way in ways:
                started = time.perf_counter()
                ring.reset()
                with open_service(policy, d.model) as oracle:
                    stream = _stream(oracle, ring, d, way, budget, seed)
                    guarded = run(d, stream=stream, own=own, held=held, seed=seed)
                rows.append(_row(name, label, way, base, bare, guarded, started))
    return rows


def fit_distribution(d: Dataset, profile_path: Path, rate: float = 1e-4) -> Path:
    """A distribution reference beside ``profile_path``: the profile's subspace, calibrated
    on the held-out split (the owner's natural rows the profile never saw) to ``rate``."""
    profile = Profile.load(profile_path).calibrated(rate)
    reference = DistributionReference.fit(profile, d.x_test, target_false_positive_rate=rate)
    return reference.save(profile_path.with_name(f"{d.name}.distribution.json"))


def _stream(oracle: Any, ring: KeyRing, d: Dataset, way: str, budget: int, seed: int) -> Stream:
    return Stream(
        oracle, ring, tier=TIER, way=WAYS[way], budget=budget, model=d.model, cover=d.x_test,
        seed=seed,
    )  # fmt: skip


def _row(
    name: str,
    strategy: str,
    way: str,
    base: float,
    bare: dict[str, Any],
    guarded: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    def gain(run: dict[str, Any]) -> float | None:
        return None if run["agreement"] is None else round(run["agreement"] - base, 4)

    ledger = guarded["ledger"]
    g = gain(guarded)
    return {
        "dataset": name,
        "strategy": strategy,
        "way": way,
        "own_baseline": round(base, 4),
        "bare_gain": gain(bare),
        "gain": g,
        "agreement": guarded["agreement"],
        # ART's own thieved copy (the answers alone, no own rows), guarded and bare
        "art_copy_agreement": guarded.get("art_agreement"),
        "art_copy_agreement_bare": bare.get("art_agreement"),
        "first_detection_row": ledger["first_detection_row"],
        "altered_rows": ledger["altered_rows"],
        "refused_rows": ledger["refused_rows"],
        "keys_used": ledger["keys_used"],
        "keys_blocked": ledger["keys_blocked"],
        "stopped": guarded["stopped"],
        "meets_target": None if strategy not in SYNTHETIC else (g is None or g <= TARGET_GAIN),
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table: one line per (data set, strategy, way)."""
    head = (
        "| data set | strategy | keys | own data | gain, no guard | gain, guarded "
        "| first detected (row) | rows altered / refused | keys blocked | target (<= 0.02) |"
    )
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        target = {None: "n/a (natural)", True: "met", False: "MISSED"}[r["meets_target"]]
        lines.append(
            f"| {r['dataset']} | {r['strategy']} | {r['way']} | {r['own_baseline']:.3f} "
            f"| {_signed(r['bare_gain'])} | {_signed(r['gain'])} "
            f"| {r['first_detection_row'] or 'never'} "
            f"| {r['altered_rows']} / {r['refused_rows']} "
            f"| {r['keys_blocked']} of {r['keys_used']} | {target} |"
        )
    return "\n".join(lines)


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def figures(quick: bool = False) -> tuple[str, dict[str, Any]]:
    """``efficacy.py --extraction``: every stream on digits and MNIST, the distribution
    signal on; ``quick``: 500 rows, blends and ART's KnockoffNets only."""
    budget = 500 if quick else 2000
    strategies: tuple[Strategy, ...] = ("blend",) if quick else STRATEGIES
    rows = [
        row
        for name in ("digits", "mnist")
        for row in extraction_table(name, budget=budget, strategies=strategies)
    ]
    met = all(r["meets_target"] is not False for r in rows)
    head = f"Extraction through the guarded service ({budget} rows per stream, gain over own data):"
    figures = {"budget": budget, "target_gain": TARGET_GAIN, "all_met": met, "rows": rows}
    return f"{head}\n\n{markdown(rows)}", figures
