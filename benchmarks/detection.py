"""Query-monitor detection: attack and benign query streams through the Monitor, in process.

    .venv/bin/python benchmarks/detection.py             # everything: ~1-2.5 min on 2 cores
    .venv/bin/python benchmarks/detection.py --no-sweep  # defaults and recommendation only

The digits example model (examples/digits/model.py: softmax regression on the
8x8 scikit-learn digits, 64 features 0..16, 10 classes) answers queries; the
Monitor (memory state) sees every query with the model's full scores, as the
guard pipeline calls it: ``check_block`` before, ``assess`` after the model.
The policy is the default one plus ``input: {shape: [64], min: 0, max: 16}``
and the reference profile ``Profile.fit(x_train)``; rows that fail those
input checks get a 422 and never reach the model; the rows of a request the
profile refuses count in the monitor's off_data signal, as in the guard. A caller gets what its
tier gives (full scores, or labels), labels once the monitor degrades it,
and nothing once it is blocked.

Streams (attacks from ``benchmarks/attacks.py``, one principal each, 1,000 rows
at most, one row per call):

- (a) black-box inversion from full scores: NES around a guess (sigma 0.5,
  10 antithetic pairs per step) from a blank image and from public digits of
  other classes, also on 20 random (start, target, seed) cases; NES that
  perturbs only the pixels that vary in public digits; coordinate-wise finite
  differences. Adaptive variants: probes spaced further apart (sigma 1..8)
  and probes hidden among natural digits (1 or 3 per probe), to show where
  detection stops.
- (b) label-only boundary probing: bisection between public digits of
  different classes, to 0.1% and 1% of the segment (and 10 other seeds);
  the same attack split round-robin over 4 keys.
- (c) extraction: uniform rows within the profile's bounds, and random convex
  mixes of 3 held-out digits; a LogisticRegression copy is trained on the
  answers and its agreement with the model on x_test is reported.
- benign: 50 principals, each 1,000 queries of the held-out digits (x_test,
  fresh shuffle per cycle, ~10% exact retries), interleaved in time; once at
  a steady pace and once in sessions.
- batches: 50 near-duplicates in one call vs 50 single calls; 50 distinct
  digits in one call.

Time is simulated: the monitor modules' ``time.time`` reads a clock that
each query advances (attackers 10 rows/s; benign principals a Poisson pace or
sessions), so the burst signal and block cool-downs behave as in a real
deployment and every seeded run gives the same figures. Cost (Monitor.assess
alone, model excluded, rows new to their principal) and memory (tracemalloc)
use the real clock.

A sweep of monitor settings, and what-ifs that need a change in src (marked
as such: a subclass overriding one method), shows which settings meet the
targets. Results: markdown tables on stdout, everything in
benchmarks/results/detection.json (git-ignored).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import platform
import re
import statistics
import sys
import time
import tracemalloc
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path[:0] = [str(BENCH_DIR), str(REPO / "examples" / "digits")]

from attacks import (  # noqa: E402
    Ask,
    AttackRun,
    Refused,
    Rejected,
    Sampler,
    boundary_search,
    diluted,
    finite_difference_inversion,
    fit_copy,
    mixture_sampler,
    nes_inversion,
    synthetic_extraction,
    uniform_sampler,
)
from model import SoftmaxModel, fit_weights, load_split  # noqa: E402

import bento_invguard.monitor.monitor as monitor_module  # noqa: E402
import bento_invguard.monitor.store as store_module  # noqa: E402
from bento_invguard import Blocked, Policy, Profile, truncate  # noqa: E402
from bento_invguard.context import QueryContext  # noqa: E402
from bento_invguard.monitor import Monitor, run_without_io  # noqa: E402
from bento_invguard.monitor.fingerprint import Fingerprinter  # noqa: E402

RESULTS = BENCH_DIR / "results" / "detection.json"
SEED = 7
BUDGET = 1000  # rows per attack stream
ATTACK_RATE = 10.0  # rows per simulated second
BENIGN_PRINCIPALS = 50
BENIGN_QUERIES = 1000  # per principal
RETRY_SHARE = 0.10
BENIGN_GAP = 50.0  # mean simulated seconds between one benign principal's queries

# Targets (project issue 4).
TARGET_BLOCK_WITHIN = 100  # queries of one principal, attacks (a) and (b)
TARGET_FP_SHARE = 0.001  # of benign principals ever flagged, degraded or blocked
TARGET_ASSESS_US = 50.0  # per query of 64 features, Monitor.assess alone

BASE_POLICY: dict[str, Any] = {
    "tiers": {"public": {"output": "full"}},
    "input": {"shape": [64], "min": 0, "max": 16},
}


# --------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class Digits:
    """The example model, its data split and the box a valid query must stay in."""

    model: SoftmaxModel
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    profile: Profile
    lower: np.ndarray  # profile bounds within the policy's [0, 16]
    upper: np.ndarray
    test_scores: np.ndarray

    def valid(self, rows: np.ndarray) -> bool:
        """True when the rows pass the policy's range and the profile check."""
        in_range = bool(((rows >= 0) & (rows <= 16)).all())
        return in_range and self.profile.first_violation(rows) is None


def load_digits() -> Digits:
    """The example's split, its model trained as examples/digits does, and the profile."""
    x_train, x_test, y_train, y_test = load_split()
    model = SoftmaxModel(*fit_weights(x_train, y_train))
    profile = Profile.fit(x_train)
    lower = np.maximum(np.asarray(profile.lower), 0.0)
    upper = np.minimum(np.asarray(profile.upper), 16.0)
    return Digits(
        model, x_train, x_test, y_test, profile, lower, upper, model.predict_proba(x_test)
    )


class Clock:
    """Simulated wall clock, advanced by the streams."""

    def __init__(self, start: float = 1.7e9) -> None:
        self.now = start

    def time(self) -> float:
        """Seconds since the epoch, as ``time.time()``."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        self.now += seconds


@contextmanager
def simulated_time(clock: Clock) -> Iterator[bool]:
    """Point the monitor modules' ``time`` module at ``clock``; yields whether it could."""
    proxy = types.SimpleNamespace(
        **{name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    )
    proxy.time = clock.time
    patched = [
        m
        for m in (monitor_module, store_module)
        if isinstance(getattr(m, "time", None), type(time))
    ]
    for module in patched:
        module.time = proxy  # type: ignore[attr-defined]
    try:
        yield bool(patched)
    finally:
        for module in patched:
            module.time = time  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- variants


class FlooredMonitor(Monitor):
    """What-if, not in src: fingerprint scale per feature floored at ``floor`` x the largest std.

    The monitor standardises each feature by the profile's std, floored at
    1e-3 x the largest: features that are (nearly) constant in training data
    (the digits' border pixels) then outweigh all the others, and noise in
    them alone moves a fingerprint far. A higher floor removes that lever.
    """

    def __init__(self, *args: Any, floor: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.profile is not None
        std = np.asarray(self.profile.std)
        scale = np.maximum(std, floor * float(std.max()))
        self._floored = Fingerprinter(len(std), np.asarray(self.profile.mean), scale)

    def fingerprinter(self, rows: np.ndarray) -> Fingerprinter:
        return self._floored


class NearOnlyDistributedMonitor(Monitor):
    """What-if, not in src: the distributed signal counts only rows that are near-duplicates
    in their sender's own history (probing), not every row (benign users share inputs)."""

    _fresh_near: np.ndarray | None = None

    def _observe(
        self, history: Any, sigs: Any, digests: Any, margins: Any, off_data: Any = None
    ) -> np.ndarray:
        fresh: np.ndarray = super()._observe(history, sigs, digests, margins, off_data)
        n = int(fresh.sum())
        if n <= history.window:
            slots = (history.count - n + np.arange(n)) % history.window
            self._fresh_near = history.near[slots].copy()
        else:
            self._fresh_near = None
        return fresh

    async def _distributed(self, key: str, sigs: np.ndarray, digests: np.ndarray) -> int:
        near = self._fresh_near
        if near is None or len(near) != len(sigs):
            near = np.ones(len(sigs), dtype=bool)
        return await super()._distributed(key, sigs[near], digests[near])


class SkipDistributedMonitor(Monitor):
    """What-if, not in src: no distributed check at all (no global scan, no global push)."""

    async def _distributed(self, key: str, sigs: np.ndarray, digests: np.ndarray) -> int:
        return 0


def floored(floor: float) -> Callable[[Policy, Profile], Monitor]:
    """A factory of :class:`FlooredMonitor` with this floor."""
    return lambda policy, profile: FlooredMonitor(policy, profile, floor=floor)


@dataclass(frozen=True)
class Variant:
    """A monitor configuration: policy overrides, and optionally a what-if needing src changes.

    ``what_if`` builds a monitor that behaves as src would after a change
    (a subclass overriding one method); None is the monitor as it is.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    what_if: Callable[[Policy, Profile], Monitor] | None = None

    @property
    def needs_src_change(self) -> bool:
        return self.what_if is not None

    def policy(self, **extra: Any) -> Policy:
        """The benchmark's base policy with this variant's monitor settings (and ``extra``)."""
        monitor = {**self.overrides, **extra}
        return Policy.model_validate({**BASE_POLICY, "monitor": monitor})

    def monitor(self, d: Digits, **extra: Any) -> Monitor:
        """A fresh monitor (memory state) for this variant and the digits profile."""
        policy = self.policy(**extra)
        if self.what_if is not None:
            return self.what_if(policy, d.profile)
        return Monitor(policy, d.profile)


# --------------------------------------------------------------------------- the endpoint


_DISTRIBUTED = re.compile(r"distributed=(\d+)")


class Gate:
    """One principal's view of the guarded predict endpoint, in process.

    ``check_block``, the input checks (a profile refusal goes to
    ``Monitor.observe_refused``, as in the guard), the model, ``Monitor.assess``,
    then the tier's output (labels once degraded). Records when the principal was first flagged,
    degraded and blocked (counted in rows, the blocking query included).
    """

    def __init__(
        self,
        monitor: Monitor,
        d: Digits,
        principal: str,
        *,
        output: str = "full",
        clock: Clock | None = None,
        rate: float = ATTACK_RATE,
    ) -> None:
        self.monitor = monitor
        self.d = d
        self.principal = principal
        self.output = output
        self.clock = clock
        self.rate = rate
        self.queries = 0
        self.first_flag: int | None = None
        self.first_degrade: int | None = None
        self.blocked_at: int | None = None
        self.risk = 0.0
        self.max_risk = 0.0
        self.reasons: list[str] = []
        self.distributed = 0
        self.rejected = 0

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.clock is not None:
            self.clock.advance(len(rows) / self.rate)
        ctx = QueryContext(endpoint="predict", principal=self.principal, tier_name="public")
        try:
            run_without_io(self.monitor.check_block(ctx))
        except Blocked:
            raise Refused("blocked") from None
        if not self.d.valid(rows):  # 422 before the model
            self.rejected += len(rows)
            if bool(((rows >= 0) & (rows <= 16)).all()):  # a profile refusal: off_data
                self.monitor.observe_refused_soon(ctx, rows)
                blocked = any(d.outcome == "block" for d in ctx.decisions)
                self._note(ctx, len(rows), blocked=blocked)  # blocked from the next query
            raise Rejected("invalid_input")
        ctx.input = rows
        ctx.scores = self.d.model.predict_proba(rows)
        try:
            run_without_io(self.monitor.assess(ctx))
        except Blocked:
            self._note(ctx, len(rows), blocked=True)
            raise Refused("blocked") from None
        self._note(ctx, len(rows), blocked=False)
        mode = "label" if ctx.degraded or self.output == "label" else "full"
        answers: np.ndarray = truncate(ctx.scores, mode)
        return answers

    def _note(self, ctx: QueryContext, rows: int, *, blocked: bool) -> None:
        at = self.queries + rows
        self.risk, self.reasons = ctx.risk, list(ctx.risk_reasons)
        self.max_risk = max(self.max_risk, ctx.risk)
        for reason in ctx.risk_reasons:
            if match := _DISTRIBUTED.fullmatch(reason):
                self.distributed = max(self.distributed, int(match.group(1)))
        if (ctx.flagged or blocked) and self.first_flag is None:
            self.first_flag = at
        if (ctx.degraded or blocked) and self.first_degrade is None:
            self.first_degrade = at
        if blocked:
            self.blocked_at = at
        else:
            self.queries = at


def undefended(d: Digits, output: str) -> Ask:
    """The model alone, answering in the tier's output mode."""

    def ask(rows: np.ndarray) -> np.ndarray:
        answers: np.ndarray = truncate(d.model.predict_proba(rows), output)
        return answers

    return ask


# --------------------------------------------------------------------------- attack streams


@dataclass(frozen=True)
class Stream:
    """One attack stream: what it runs, what the caller's tier answers, how to score its gain."""

    key: str  # short column name for the sweep table
    name: str
    family: str  # "a", "a-spaced", "b", "c"
    output: str  # "full" or "label"
    run: Callable[[Ask, int], AttackRun]  # (ask, budget) -> what the attack did
    gain: Callable[[AttackRun], float]
    gain_name: str


def _inversion_gain(d: Digits, target: int) -> Callable[[AttackRun], float]:
    def gain(run: AttackRun) -> float:
        guess = np.asarray(run.output["guess"])[np.newaxis]
        return float(d.model.predict_proba(guess)[0, target])

    return gain


def _boundary_gain(run: AttackRun) -> float:
    return float(len(run.output["points"]))


def _copy_gain(d: Digits) -> Callable[[AttackRun], float]:
    def gain(run: AttackRun) -> float:
        if len(run.output["x"]) == 0:
            return 0.0
        predict = fit_copy(run.output["x"], run.output["answers"])
        return float((predict(d.x_test) == d.test_scores.argmax(axis=1)).mean())

    return gain


def first_of(d: Digits, label: int) -> np.ndarray:
    """The first held-out digit of a class: a public sample the attacker holds."""
    row: np.ndarray = d.x_test[d.y_test == label][0]
    return row


Runner = Callable[[Ask, int], AttackRun]


def _nes(
    d: Digits,
    start: np.ndarray,
    target: int,
    sigma: float,
    *,
    mask: np.ndarray | None = None,
    seed: int = SEED,
    cover: int = 0,
) -> Runner:
    """NES inversion within the valid box; with ``cover``, each probe among natural digits."""

    def run(ask: Ask, budget: int) -> AttackRun:
        if cover:
            ask, budget = diluted(ask, d.x_test, cover, seed=seed), budget // (1 + cover)
        return nes_inversion(
            ask,
            budget,
            target=target,
            start=start,
            lower=d.lower,
            upper=d.upper,
            sigma=sigma,
            seed=seed,
            features=mask,
        )

    return run


def _finite_differences(d: Digits, start: np.ndarray, target: int) -> Runner:
    def run(ask: Ask, budget: int) -> AttackRun:
        return finite_difference_inversion(
            ask, budget, target=target, start=start, lower=d.lower, upper=d.upper, delta=1.0
        )

    return run


def _bisection(d: Digits, tol: float, seed: int = SEED) -> Runner:
    def run(ask: Ask, budget: int) -> AttackRun:
        return boundary_search(ask, budget, pool=d.x_test, tol=tol, seed=seed)

    return run


def _extraction(sampler: Sampler) -> Runner:
    def run(ask: Ask, budget: int) -> AttackRun:
        return synthetic_extraction(ask, budget, sampler=sampler, seed=SEED)

    return run


def attack_streams(d: Digits) -> list[Stream]:
    """Attacks (a), (b), (c) and the adaptive variants of (a), as run for every variant."""
    # Features that vary in the attacker's public samples: the border pixels of
    # the digits are (nearly) always 0, so an adaptive attacker leaves them alone.
    live = d.x_test.std(axis=0) > 0.5
    zero = first_of(d, 0)

    def inversion(key: str, name: str, family: str, run: Runner, target: int) -> Stream:
        return Stream(key, name, family, "full", run, _inversion_gain(d, target), "target score")

    blank = np.zeros(64)
    streams = [
        inversion("a blank", "(a) NES sigma 0.5, blank -> 3", "a", _nes(d, blank, 3, 0.5), 3)
    ]
    for digit, target in ((0, 3), (1, 7), (5, 9)):
        streams.append(
            inversion(
                f"a {digit}>{target}",
                f"(a) NES sigma 0.5, digit {digit} -> {target}",
                "a",
                _nes(d, first_of(d, digit), target, 0.5),
                target,
            )
        )
    streams.append(
        inversion(
            "a live",
            "(a) NES sigma 0.5, live pixels only, digit 0 -> 3",
            "a",
            _nes(d, zero, 3, 0.5, mask=live),
            3,
        )
    )
    streams.append(
        inversion(
            "a fd",
            "(a) finite differences (delta 1), digit 0 -> 3",
            "a",
            _finite_differences(d, zero, 3),
            3,
        )
    )
    for sigma in (1.0, 2.0, 4.0, 8.0):
        streams.append(
            inversion(
                f"spaced {sigma:g}",
                f"(a) spaced: NES sigma {sigma:g}, live pixels, digit 0 -> 3",
                "a-spaced",
                _nes(d, zero, 3, sigma, mask=live),
                3,
            )
        )
    for cover in (1, 3):
        streams.append(
            inversion(
                f"diluted 1:{cover}",
                f"(a) diluted: NES sigma 0.5, live pixels, {cover} natural digits per probe",
                "a-diluted",
                _nes(d, zero, 3, 0.5, mask=live, cover=cover),
                3,
            )
        )
    for tol in (1e-3, 1e-2):
        streams.append(
            Stream(
                f"b {tol:.1%}",
                f"(b) label-only bisection to {tol:.1%} of the segment",
                "b",
                "label",
                _bisection(d, tol),
                _boundary_gain,
                "boundary points",
            )
        )
    samplers = (
        ("c uniform", "uniform in profile bounds", uniform_sampler(d.lower, d.upper)),
        ("c mixes", "mixes of 3 held-out digits", mixture_sampler(d.x_test, 3)),
    )
    for key, what, sampler in samplers:
        streams.append(
            Stream(
                key,
                f"(c) extraction, {what}",
                "c",
                "label",
                _extraction(sampler),
                _copy_gain(d),
                "copy agreement",
            )
        )
    return streams


def random_streams(d: Digits, cases: int = 20, seeds: int = 10) -> list[Stream]:
    """(a) NES sigma 0.5 from random held-out digits to random other classes, random seeds;
    (b) bisection with other seeds: how much the block point varies with the case."""
    rng = np.random.default_rng(SEED + 2)
    streams = []
    for k in range(cases):
        i = int(rng.integers(len(d.x_test)))
        target = int((d.y_test[i] + 1 + rng.integers(9)) % 10)
        seed = int(rng.integers(1 << 16))
        streams.append(
            Stream(
                f"a random {k}",
                f"(a) NES sigma 0.5, x_test[{i}] -> {target}, seed {seed}",
                "a-random",
                "full",
                _nes(d, d.x_test[i], target, 0.5, seed=seed),
                _inversion_gain(d, target),
                "target score",
            )
        )
    for seed, tol in itertools.product(range(1, seeds + 1), (1e-3, 1e-2)):
        streams.append(
            Stream(
                f"b random {seed} {tol:g}",
                f"(b) bisection to {tol:.1%}, seed {seed}",
                "b-random",
                "label",
                _bisection(d, tol, SEED + seed),
                _boundary_gain,
                "boundary points",
            )
        )
    return streams


def summarize_random(runs: list[dict[str, Any]], family: str) -> dict[str, Any]:
    """How many of a family's random cases were blocked within the target, and the spread."""
    hits = [r["blocked_at"] for r in runs if r["family"] == family]
    blocked = sorted(h for h in hits if h is not None)
    return {
        "cases": len(hits),
        "within_target": sum(h <= TARGET_BLOCK_WITHIN for h in blocked),
        "not_blocked": len(hits) - len(blocked),
        "median": statistics.median(blocked) if blocked else None,
        "max": max(blocked) if blocked and len(blocked) == len(hits) else None,
    }


def run_stream(stream: Stream, variant: Variant, d: Digits, *, gains: bool) -> dict[str, Any]:
    """One stream, one principal, a fresh monitor; with ``gains``, also what the attacker got,
    defended and undefended (the same stream against the model alone)."""
    clock = Clock()
    with simulated_time(clock):
        gate = Gate(variant.monitor(d), d, "attacker", output=stream.output, clock=clock)
        run = stream.run(gate, BUDGET)
    result = {
        "key": stream.key,
        "stream": stream.name,
        "family": stream.family,
        "output": stream.output,
        "answered": run.queries,
        "first_flag": gate.first_flag,
        "first_degrade": gate.first_degrade,
        "blocked_at": gate.blocked_at,
        "risk": round(gate.risk, 3),
        "max_risk": round(gate.max_risk, 3),
        "reasons": gate.reasons,
        "rejected_rows": gate.rejected,
    }
    if gains:
        free = stream.run(undefended(d, stream.output), BUDGET)
        result["gain_name"] = stream.gain_name
        result["gain_defended"] = round(stream.gain(run), 3)
        result["gain_undefended"] = round(stream.gain(free), 3)
    return result


def split_boundary_probe(variant: Variant, d: Digits, keys: int = 4) -> dict[str, Any]:
    """(b) over ``keys`` principals round-robin, one shared monitor; a blocked key is dropped."""
    clock = Clock()
    with simulated_time(clock):
        monitor = variant.monitor(d)
        gates = [
            Gate(monitor, d, f"sybil-{k}", output="label", clock=clock, rate=ATTACK_RATE / keys)
            for k in range(keys)
        ]
        turn = itertools.count()

        def ask(rows: np.ndarray) -> np.ndarray:
            for _ in range(keys):
                gate = gates[next(turn) % keys]
                if gate.blocked_at is None:
                    try:
                        return gate(rows)
                    except Refused:
                        continue  # this key is blocked: go on with the others
            raise Refused("all keys blocked")

        run = boundary_search(ask, BUDGET, pool=d.x_test, tol=1e-3, seed=SEED)
    return {
        "stream": f"(b) boundary bisection to 0.1%, {keys} keys round-robin",
        "answered": run.queries,
        "keys_blocked": sum(g.blocked_at is not None for g in gates),
        "per_key_first_flag": [g.first_flag for g in gates],
        "per_key_blocked_at": [g.blocked_at for g in gates],
        "distributed_max": max(g.distributed for g in gates),
        "boundary_points": len(run.output["points"]),
    }


def validation_of_synthetic(d: Digits, rows: int = 2000) -> dict[str, float]:
    """Share of synthetic rows the input checks (range and profile) let through."""
    rng = np.random.default_rng(SEED)
    wide = rng.uniform(0.0, 16.0, size=(rows, 64))
    boxed = rng.uniform(d.lower, d.upper, size=(rows, 64))
    return {
        "uniform_0_16_pass": float(np.mean([d.valid(r[np.newaxis]) for r in wide])),
        "uniform_in_profile_bounds_pass": float(np.mean([d.valid(r[np.newaxis]) for r in boxed])),
        "x_test_pass": float(np.mean([d.valid(r[np.newaxis]) for r in d.x_test])),
    }


# --------------------------------------------------------------------------- benign traffic


def benign_schedule(
    d: Digits, principals: int, per: int, *, bursty: bool, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, principal, x_test row) of every benign query, in time order.

    Each principal cycles through x_test in a fresh shuffle per cycle and
    retries the previous row exactly ~10% of the time. Steady: Poisson pace,
    one query per ``BENIGN_GAP`` s on average. Bursty: sessions of 20-100
    queries ~2 s apart, sessions ~2 h apart.
    """
    rng = np.random.default_rng(seed)
    times, owners, rows = [], [], []
    for p in range(principals):
        seq: list[int] = []
        while len(seq) < per:
            for i in rng.permutation(len(d.x_test)):
                if seq and rng.random() < RETRY_SHARE:
                    seq.append(seq[-1])
                seq.append(int(i))
        if bursty:
            gaps = rng.exponential(2.0, per)
            edges = np.cumsum(rng.integers(20, 101, size=per))
            gaps[edges[edges < per]] += rng.exponential(7200.0, int((edges < per).sum()))
        else:
            gaps = rng.exponential(BENIGN_GAP, per)
        times.append(rng.uniform(0, BENIGN_GAP) + np.cumsum(gaps))
        owners.append(np.full(per, p))
        rows.append(np.asarray(seq[:per]))
    t, o, r = np.concatenate(times), np.concatenate(owners), np.concatenate(rows)
    order = np.argsort(t, kind="stable")
    return t[order], o[order], r[order]


def benign_traffic(
    variant: Variant,
    d: Digits,
    *,
    bursty: bool = False,
    principals: int = BENIGN_PRINCIPALS,
    per: int = BENIGN_QUERIES,
) -> dict[str, Any]:
    """Benign principals through one shared monitor: who was ever flagged, degraded, blocked."""
    times, owners, rows = benign_schedule(d, principals, per, bursty=bursty, seed=SEED + 1)
    clock = Clock()
    start = clock.now
    flagged = np.zeros(principals, dtype=bool)
    degraded = np.zeros(principals, dtype=bool)
    blocked = np.zeros(principals, dtype=bool)
    own_max = np.zeros(principals)
    own_reasons: dict[int, list[str]] = {}
    distributed = np.zeros(principals, dtype=int)
    flagged_by_distributed_only = np.zeros(principals, dtype=bool)
    valid = np.array([d.valid(d.x_test[i : i + 1]) for i in range(len(d.x_test))])
    with simulated_time(clock):
        monitor = variant.monitor(d)
        for t, p, i in zip(times, owners, rows, strict=True):
            clock.now = start + float(t)
            if not valid[i]:
                continue  # 422 from input validation, before the model and the monitor
            ctx = QueryContext(endpoint="predict", principal=f"user-{p}", tier_name="public")
            try:
                run_without_io(monitor.check_block(ctx))
                ctx.input = d.x_test[i : i + 1]
                ctx.scores = d.test_scores[i : i + 1]
                run_without_io(monitor.assess(ctx))
            except Blocked:
                blocked[p] = True
            counts = [int(m.group(1)) for r in ctx.risk_reasons if (m := _DISTRIBUTED.fullmatch(r))]
            own, why = ctx.risk, ctx.risk_reasons
            if counts:  # the distributed signal raised the risk: the principal's own is below
                distributed[p] = max(distributed[p], *counts)
                history = run_without_io(monitor.store.load(monitor.key(ctx)))
                own, why = history.risk(monitor.settings) if history else (0.0, [])
            if own > own_max[p]:
                own_max[p], own_reasons[int(p)] = own, why
            flagged[p] |= ctx.flagged or blocked[p]
            degraded[p] |= ctx.degraded or blocked[p]
            if ctx.flagged and own < monitor.settings.thresholds.flag:
                flagged_by_distributed_only[p] = True
    worst = int(own_max.argmax())
    return {
        "principals": principals,
        "queries_each": per,
        "pace": "bursty sessions" if bursty else "steady",
        "rejected_by_validation_share": round(float((~valid[rows]).mean()), 4),
        "flagged_share": float(flagged.mean()),
        "degraded_share": float(degraded.mean()),
        "blocked_share": float(blocked.mean()),
        "flagged_by_distributed_only": int(flagged_by_distributed_only.sum()),
        "own_risk_max": round(float(own_max.max()), 3),
        "own_risk_max_reasons": own_reasons.get(worst, []),
        "own_risk_p50": round(float(np.median(own_max)), 3),
        "distributed_max": int(distributed.max()),
    }


# --------------------------------------------------------------------------- batches


def batch_vs_single(variant: Variant, d: Digits) -> dict[str, Any]:
    """50 near-duplicates (one digit, noise 0.5 on its ink pixels) in one call vs 50 calls."""
    rng = np.random.default_rng(SEED)
    base = first_of(d, 2)
    noise = rng.normal(0.0, 0.5, (50, 64)) * (base > 0)
    rows = np.clip(base + noise, d.lower, d.upper)
    out: dict[str, Any] = {}
    for label, calls in (
        ("50 single calls", [r[np.newaxis] for r in rows]),
        ("1 call, 50 rows", [rows]),
    ):
        clock = Clock()
        with simulated_time(clock):
            gate = Gate(variant.monitor(d), d, "batcher", clock=clock)
            sent = 0
            for call in calls:
                sent += 1
                try:
                    gate(call)
                except Refused:
                    break
        out[label] = {
            "calls": sent,
            "first_flag_row": gate.first_flag,
            "blocked_at_row": gate.blocked_at,
            "risk": round(gate.risk, 3),
            "reasons": gate.reasons,
        }
    clock = Clock()
    with simulated_time(clock):
        gate = Gate(variant.monitor(d), d, "benign-batcher", clock=clock)
        pick = np.random.default_rng(SEED).choice(len(d.x_test), 50, replace=False)
        gate(d.x_test[pick])
    out["1 call, 50 distinct held-out digits"] = {
        "calls": 1,
        "first_flag_row": gate.first_flag,
        "blocked_at_row": gate.blocked_at,
        "risk": round(gate.risk, 3),
        "reasons": gate.reasons,
    }
    return out


# --------------------------------------------------------------------------- cost


def _percentiles(ns: Sequence[int]) -> dict[str, float]:
    us = np.asarray(ns, dtype=np.float64) / 1000.0
    return {
        "median_us": round(float(np.median(us)), 1),
        "p90_us": round(float(np.percentile(us, 90)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def time_assess(
    variant: Variant,
    d: Digits,
    principals: int = 200,
    warm: int = 130,
    rounds: int = 3,
    per_round: int = 10_000,
) -> dict[str, Any]:
    """Monitor.assess alone (model excluded), real clock, windows and global window full.

    Several rounds, as the machine may be shared: the spread between rounds
    shows the noise. Each call is timed on the wall clock and on the thread's
    CPU clock (which a busy machine's preemption does not inflate). A 50-row
    call is timed per row; check_block (the other call a request makes) too.
    """
    monitor = variant.monitor(d)
    pool = np.concatenate([d.x_train, d.x_test])
    pool_scores = d.model.predict_proba(pool)
    sent = np.zeros(principals, dtype=int)  # queries each 1-row principal has sent

    def single_for(j: int) -> QueryContext:
        """Principal j % principals's next query: consecutive pool rows from its own offset,
        so none is an exact retry within its window (a retry takes a shorter path)."""
        p = j % principals
        i = (7 * p + sent[p]) % len(pool)
        sent[p] += 1
        ctx = QueryContext(endpoint="predict", principal=f"t{p}", tier_name="public")
        ctx.input, ctx.scores = pool[i : i + 1], pool_scores[i : i + 1]
        return ctx

    def batch_for(j: int, round_: int) -> QueryContext:
        """50 rows a batcher has not sent before (the 1-row principals are others)."""
        ctx = QueryContext(endpoint="predict", principal=f"b{j}", tier_name="public")
        idx = (50 * j + 1000 * round_ + np.arange(50)) % len(pool)
        ctx.input, ctx.scores = pool[idx], pool_scores[idx]
        return ctx

    def timed(make: Callable[[QueryContext], Any], ctx: QueryContext) -> tuple[int, int]:
        """Wall and CPU nanoseconds per row of one call; the context is built before."""
        rows = 1 if ctx.input is None else len(ctx.input)
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        with suppress(Blocked):
            run_without_io(make(ctx))
        return (time.perf_counter_ns() - wall) // rows, (time.thread_time_ns() - cpu) // rows

    for j in range(warm * principals):
        timed(monitor.assess, single_for(j))
    results: dict[str, list[dict[str, float]]] = {}
    for round_ in range(rounds):
        singles = [single_for(j) for j in range(per_round)]
        batches = [batch_for(j, round_) for j in range(200)]
        checks = [
            QueryContext(endpoint="predict", principal=f"t{j % principals}", tier_name="public")
            for j in range(per_round // 4)
        ]
        gc.collect()  # the garbage of building the contexts is not the monitor's
        kinds = {
            "assess, 1 row": [timed(monitor.assess, ctx) for ctx in singles],
            "assess, 50 rows, per row": [timed(monitor.assess, ctx) for ctx in batches],
            "check_block": [timed(monitor.check_block, ctx) for ctx in checks],
        }
        for kind, samples in kinds.items():
            wall = _percentiles([w for w, _ in samples])
            cpu = _percentiles([c for _, c in samples])
            results.setdefault(kind, []).append(
                {"calls": len(samples), **wall, "cpu_median_us": cpu["median_us"]}
                | {"cpu_p99_us": cpu["p99_us"]}
            )
    import os

    return {
        "variant": variant.name,
        "setup": f"{principals} principals, windows full ({monitor.settings.window}), "
        "global window full (2048)",
        "rounds": results,
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


def memory_per_principal(
    variant: Variant, d: Digits, principals: int = 5000, queries: int = 2
) -> dict[str, Any]:
    """tracemalloc over ``principals`` new principals of ``queries`` queries each (memory://)."""
    monitor = variant.monitor(d)
    n = len(d.x_test)

    def send(p: int, i: int) -> None:
        ctx = QueryContext(endpoint="predict", principal=f"m{p}", tier_name="public")
        ctx.input, ctx.scores = d.x_test[i % n : i % n + 1], d.test_scores[i % n : i % n + 1]
        run_without_io(monitor.assess(ctx))

    send(-1, 0)  # fingerprinter, global window and store exist before measuring
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for p in range(principals):
        for q in range(queries):
            send(p, p * queries + q)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    probe = QueryContext(endpoint="predict", principal="m0", tier_name="public")
    history = run_without_io(monitor.store.load(monitor.key(probe)))
    return {
        "variant": variant.name,
        "principals": principals,
        "bytes_per_principal": round(grown / principals),
        "redis_history_bytes": len(history.to_bytes()) if history else None,
        "window": monitor.settings.window,
    }


def principal_cap(d: Digits, cap: int = 100, principals: int = 2000) -> dict[str, Any]:
    """With ``max_principals=cap``, many principals: how many are kept, and memory stays flat."""
    monitor = Variant("cap").monitor(d, max_principals=cap)
    n = len(d.x_test)
    kept, traced = [], []
    gc.collect()
    tracemalloc.start()
    for p in range(principals):
        ctx = QueryContext(endpoint="predict", principal=f"c{p}", tier_name="public")
        ctx.input, ctx.scores = d.x_test[p % n : p % n + 1], d.test_scores[p % n : p % n + 1]
        run_without_io(monitor.assess(ctx))
        if (p + 1) % (principals // 4) == 0:
            gc.collect()
            kept.append(len(monitor.store.histories))  # type: ignore[attr-defined]
            traced.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    return {
        "max_principals": cap,
        "principals_sent": principals,
        "kept_at_quarters": kept,
        "traced_bytes_at_quarters": traced,
        "cap_holds": max(kept) <= cap,
    }


# --------------------------------------------------------------------------- sweep


# "quiet": the distributed and burst signals out of the way (they flag benign traffic).
QUIET = {"distributed_min_principals": 1_000_000, "burst_factor": 10_000.0}
DEFAULTS = Variant("defaults")
RECOMMENDED = Variant(
    "recommended (policy only): max_distance 8, window 64, block 0.75, quiet",
    {"max_distance": 8, "window": 64, "thresholds": {"block": 0.75}, **QUIET},
)
SWEEP = [
    DEFAULTS,
    Variant("max_distance 6", {"max_distance": 6}),
    Variant("max_distance 8", {"max_distance": 8}),
    Variant("block 0.75", {"thresholds": {"block": 0.75}}),
    Variant("boundary_margin 0.4", {"boundary_margin": 0.4}),
    Variant("benign_boundary_rate 0.10", {"benign_boundary_rate": 0.10}),
    Variant("window 64", {"window": 64}),
    Variant("min_queries 8", {"min_queries": 8}),
    Variant("distributed signal off", {"distributed_min_principals": 1_000_000}),
    Variant("burst_factor 10000", {"burst_factor": 10_000.0}),
    Variant(
        "max_distance 6, block 0.75, quiet",
        {"max_distance": 6, "thresholds": {"block": 0.75}, **QUIET},
    ),
    Variant(
        "max_distance 8, block 0.75, quiet",
        {"max_distance": 8, "thresholds": {"block": 0.75}, **QUIET},
    ),
    RECOMMENDED,
    Variant("what-if (src): scale floor 0.2, quiet", dict(QUIET), floored(0.2)),
    Variant(
        "what-if (src): scale floor 0.2, block 0.75, quiet",
        {"thresholds": {"block": 0.75}, **QUIET},
        floored(0.2),
    ),
    Variant(
        "what-if (src): near-only distributed, burst_factor 10000",
        {"burst_factor": 10_000.0},
        NearOnlyDistributedMonitor,
    ),
]
DETAILED = {DEFAULTS.name, RECOMMENDED.name}
#: Timed only: what the recommendation costs once src skips the distributed scan when it is off.
NO_DISTRIBUTED = Variant(
    "what-if (src): recommended, distributed check skipped",
    dict(RECOMMENDED.overrides),
    SkipDistributedMonitor,
)


def evaluate(
    variant: Variant, d: Digits, streams: list[Stream], randoms: list[Stream]
) -> dict[str, Any]:
    """Every attack stream and benign traffic under one variant; more for the detailed ones."""
    detail = variant.name in DETAILED
    random_runs = [run_stream(s, variant, d, gains=False) for s in randoms]
    result: dict[str, Any] = {
        "variant": variant.name,
        "overrides": variant.overrides,
        "needs_src_change": variant.needs_src_change,
        "streams": [run_stream(s, variant, d, gains=detail) for s in streams],
        "random_a": summarize_random(random_runs, "a-random"),
        "random_b": summarize_random(random_runs, "b-random"),
        "random_runs": [
            {"stream": r["stream"], "blocked_at": r["blocked_at"]} for r in random_runs
        ],
        "benign": benign_traffic(variant, d),
        "benign_bursty": benign_traffic(variant, d, bursty=True),
        "split_keys": split_boundary_probe(variant, d),
    }
    if detail:
        result["batches"] = batch_vs_single(variant, d)
    result["targets"] = targets(result)
    return result


_SHARED: dict[str, Any] = {}


def _evaluate_by_name(name: str) -> dict[str, Any]:
    """Pool worker: the data and streams come with the fork, only the variant's name is sent."""
    variant = next(v for v in SWEEP if v.name == name)
    return evaluate(variant, _SHARED["digits"], _SHARED["streams"], _SHARED["randoms"])


def sweep(
    variants: list[Variant], d: Digits, streams: list[Stream], randoms: list[Stream], jobs: int
) -> list[dict[str, Any]]:
    """Evaluate the variants, on ``jobs`` forked processes when more than one."""
    if jobs <= 1 or len(variants) == 1:
        return [evaluate(v, d, streams, randoms) for v in variants]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    try:
        context = multiprocessing.get_context("fork")  # the streams hold closures: no pickling
    except ValueError:  # no fork on this platform
        return [evaluate(v, d, streams, randoms) for v in variants]
    _SHARED.update(digits=d, streams=streams, randoms=randoms)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        return list(pool.map(_evaluate_by_name, [v.name for v in variants]))


def _worst_block(runs: list[dict[str, Any]], family: str) -> int | None:
    """The latest block among a family's streams; None when one was not blocked at all."""
    hits = [r["blocked_at"] for r in runs if r["family"] == family]
    return None if any(h is None for h in hits) else max(hits)


def _fp_share(benign: dict[str, Any]) -> float:
    return float(max(benign["flagged_share"], benign["degraded_share"], benign["blocked_share"]))


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Which of the issue's detection targets a variant meets."""
    a = _worst_block(result["streams"], "a")
    b = _worst_block(result["streams"], "b")
    steady, bursty = _fp_share(result["benign"]), _fp_share(result["benign_bursty"])
    ra, rb = result["random_a"], result["random_b"]
    return {
        "a_worst_blocked_at": a,
        "a_met": a is not None and a <= TARGET_BLOCK_WITHIN and ra["within_target"] == ra["cases"],
        "b_worst_blocked_at": b,
        "b_met": b is not None and b <= TARGET_BLOCK_WITHIN and rb["within_target"] == rb["cases"],
        "benign_fp_share": steady,
        "benign_met": steady <= TARGET_FP_SHARE,
        "benign_bursty_fp_share": bursty,
        "benign_bursty_met": bursty <= TARGET_FP_SHARE,
    }


# --------------------------------------------------------------------------- report


def _q(value: int | None) -> str:
    return "not blocked" if value is None else str(value)


def _flag(value: int | None) -> str:
    return "-" if value is None else str(value)


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(_row(header))
    print(_row(["---"] * len(header)))
    for cells in rows:
        print(_row(cells))


def print_streams(result: dict[str, Any]) -> None:
    """Per attack stream: when flagged, degraded, blocked, and what the attacker got."""
    print(f"\n### Attack streams: {result['variant']}\n")
    rows = []
    for r in result["streams"]:
        gain = f"{r['gain_name']} {r['gain_defended']:g} / {r['gain_undefended']:g}"
        rows.append(
            [
                r["stream"],
                r["output"],
                _flag(r["first_flag"]),
                _flag(r["first_degrade"]),
                _q(r["blocked_at"]),
                f"{r['risk']:.2f}",
                ", ".join(r["reasons"]) or "-",
                gain,
            ]
        )
    header = ["stream", "answers", "first flag", "degraded", "blocked", "risk", "reasons"]
    _table([*header, "attacker's gain: defended / undefended"], rows)
    s = result["split_keys"]
    print(
        f"\n{s['stream']}: keys blocked {s['keys_blocked']}/{len(s['per_key_blocked_at'])} "
        f"(at row {s['per_key_blocked_at']} of each key's own queries), {s['answered']} rows "
        f"answered in all, distributed signal max {s['distributed_max']}, "
        f"{s['boundary_points']} boundary points found."
    )


def print_benign(results: list[dict[str, Any]]) -> None:
    """Benign traffic per variant and pace: shares of principals ever flagged, etc."""
    print(
        f"\n### Benign traffic: {BENIGN_PRINCIPALS} principals x {BENIGN_QUERIES} queries "
        "of x_test, ~10% exact retries\n"
    )
    rows = []
    for res in results:
        for b in (res["benign"], res["benign_bursty"]):
            rows.append(
                [
                    res["variant"],
                    b["pace"],
                    f"{b['flagged_share']:.0%}",
                    f"{b['degraded_share']:.0%}",
                    f"{b['blocked_share']:.0%}",
                    b["flagged_by_distributed_only"],
                    f"{b['own_risk_max']:.2f} ({', '.join(b['own_risk_max_reasons']) or '-'})",
                    f"{b['own_risk_p50']:.2f}",
                    b["distributed_max"],
                ]
            )
    header = ["variant", "pace", "flagged", "degraded", "blocked", "flagged by distributed only"]
    _table([*header, "own risk, max (reasons)", "own risk, median", "distributed count max"], rows)


def print_batches(result: dict[str, Any]) -> None:
    """Near-duplicates in one call vs many calls, and a benign batch."""
    print(f"\n### Batches: {result['variant']}\n")
    rows = [
        [
            label,
            b["calls"],
            _flag(b["first_flag_row"]),
            _q(b["blocked_at_row"]),
            f"{b['risk']:.2f}",
            ", ".join(b["reasons"]) or "-",
        ]
        for label, b in result["batches"].items()
    ]
    _table(
        ["query pattern", "calls", "first flag (row)", "blocked at (row)", "risk", "reasons"], rows
    )


def _random_cell(summary: dict[str, Any]) -> str:
    worst = _q(summary["max"])
    median = "-" if summary["median"] is None else f"{summary['median']:g}"
    return f"{summary['within_target']}/{summary['cases']} ({median}, {worst})"


def print_sweep(results: list[dict[str, Any]], streams: list[Stream]) -> None:
    """One row per variant: where each stream is blocked, and which targets are met."""
    print(
        f"\n### Sweep: row at which each stream is blocked ({BUDGET} rows at most, "
        "'-' = not blocked)\n"
    )
    rows = []
    for res in results:
        t, s = res["targets"], res["split_keys"]
        cells = [_flag(r["blocked_at"]) for r in res["streams"]]
        rows.append(
            [
                res["variant"],
                *cells,
                f"{s['keys_blocked']}/{len(s['per_key_blocked_at'])}",
                _random_cell(res["random_a"]),
                _random_cell(res["random_b"]),
                f"{t['benign_fp_share']:.0%}",
                f"{t['benign_bursty_fp_share']:.0%}",
                _yes(t["a_met"]),
                _yes(t["b_met"]),
                _yes(t["benign_met"]),
                _yes(t["benign_bursty_met"]),
            ]
        )
    header = ["variant", *(s.key for s in streams), "b, 4 keys blocked"]
    header += ["a random: <= 100 (median, max)", "b random: <= 100 (median, max)"]
    header += [
        "benign FP steady",
        "benign FP bursty",
        "a <= 100",
        "b <= 100",
        "FP steady ok",
        "FP bursty ok",
    ]
    _table(header, rows)
    print("\nColumns: " + "; ".join(f"{s.key} = {s.name}" for s in streams) + ".")
    print(
        "a random: NES sigma 0.5 from 20 random held-out digits to random other classes; "
        "b random: bisection with 10 other seeds, to 0.1% and 1%. "
        "FP = share of benign principals ever flagged, degraded or blocked."
    )


def print_cost(
    costs: list[dict[str, Any]], memories: list[dict[str, Any]], cap: dict[str, Any]
) -> None:
    """Time per call (wall and CPU), memory per principal and the principal cap."""
    print("\n### Cost: Monitor.assess alone, real clock, memory://\n")
    rows = []
    for cost in costs:
        for name, rounds in cost["rounds"].items():
            for k, c in enumerate(rounds):
                head = [cost["variant"], name, k + 1, c["calls"], c["median_us"], c["p90_us"]]
                rows.append([*head, c["p99_us"], c["cpu_median_us"], c["cpu_p99_us"]])
    header = ["variant", "call", "round", "calls", "median us", "p90 us", "p99 us"]
    _table([*header, "CPU median us", "CPU p99 us"], rows)
    print("\nState: " + "; ".join(f"{c['variant']}: {c['setup']}" for c in costs) + ".")
    print(f"\nLoad average while timing: {costs[-1]['loadavg']} (2 cores, shared machine).")
    print()
    redis = "redis_history_bytes"
    _table(
        ["variant", "bytes per principal (tracemalloc)", "principals", "window", "Redis bytes"],
        [
            [m["variant"], m["bytes_per_principal"], m["principals"], m["window"], m[redis]]
            for m in memories
        ],
    )
    print(
        f"\nCap: max_principals {cap['max_principals']}, {cap['principals_sent']} principals "
        f"sent; kept at each quarter {cap['kept_at_quarters']}, traced bytes "
        f"{cap['traced_bytes_at_quarters']}; cap holds: {cap['cap_holds']}."
    )


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    """Run everything, print markdown, write benchmarks/results/detection.json."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--no-sweep", action="store_true", help="defaults and recommendation only")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the sweep (default 2)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    d = load_digits()
    with simulated_time(Clock()) as patched:
        clock_mode = "simulated" if patched else "wall (could not patch the monitor's clock)"
    streams = attack_streams(d)
    variants = [v for v in SWEEP if not args.no_sweep or v.name in DETAILED]
    randoms = random_streams(d)
    results = sweep(variants, d, streams, randoms, args.jobs)
    by_name = {r["variant"]: r for r in results}
    costs = [time_assess(v, d) for v in (DEFAULTS, RECOMMENDED, NO_DISTRIBUTED)]
    memories = [memory_per_principal(v, d) for v in (DEFAULTS, RECOMMENDED)]
    cap = principal_cap(d)
    validation = validation_of_synthetic(d)
    elapsed = time.perf_counter() - started

    print("## Query monitor (detection)\n")
    print(
        f"Clock: {clock_mode}; seeds fixed; "
        f"Python {platform.python_version()}, {platform.machine()}."
    )
    for name in (DEFAULTS.name, RECOMMENDED.name):
        print_streams(by_name[name])
    print_benign([by_name[DEFAULTS.name], by_name[RECOMMENDED.name]])
    print_batches(by_name[DEFAULTS.name])
    print(
        f"\nInput validation (range 0..16 and the profile, before the monitor) lets through "
        f"{validation['uniform_0_16_pass']:.0%} of uniform 0..16 rows, "
        f"{validation['uniform_in_profile_bounds_pass']:.0%} of uniform rows within the profile's "
        f"bounds (stream c uniform) and {validation['x_test_pass']:.1%} of the held-out digits."
    )
    print_sweep(results, streams)
    print_benign([r for r in results if r["variant"] not in DETAILED])
    print_cost(costs, memories, cap)
    print(f"\n(ran in {elapsed:.0f} s)")

    RESULTS.parent.mkdir(exist_ok=True)
    document = {
        "clock": clock_mode,
        "budget_rows": BUDGET,
        "targets": {
            "block_within": TARGET_BLOCK_WITHIN,
            "benign_fp_share": TARGET_FP_SHARE,
            "assess_us": TARGET_ASSESS_US,
        },
        "variants": results,
        "cost": costs,
        "memory": memories,
        "cap": cap,
        "validation": validation,
        "seconds": round(elapsed, 1),
    }
    RESULTS.write_text(json.dumps(document, indent=1, default=str))


if __name__ == "__main__":
    main()
