"""The monitor's fast paths (one row, in-process store) against the general code they replace.

The reference below is the monitor's earlier, general code: numpy per row, a
History ring buffer searched with numpy, risk summed over a dict. Every fast
path must give the same values, the same warnings (numpy's, which the test
configuration turns into errors) and the same stored state.
"""

from __future__ import annotations

import math
import struct
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bento_invguard import Policy
from bento_invguard.context import QueryContext
from bento_invguard.errors import Blocked, GuardRejection
from bento_invguard.monitor import History, Monitor, run_without_io
from bento_invguard.monitor.fingerprint import (
    Fingerprinter,
    first_margin,
    row_digest,
    row_digests,
    top_margin,
)
from bento_invguard.monitor.history import BURST_HALF_LIFE, BURST_MIN_RECENT, BURST_WEIGHT
from bento_invguard.policy.monitor import MonitorPolicy

# ---------------------------------------------------------------------- reference


def ref_fingerprints(fp: Fingerprinter, rows: np.ndarray) -> np.ndarray:
    flat = rows.reshape(rows.shape[0], -1).astype(np.float64, copy=False)
    bits = (flat @ fp._weights - fp._offset) > 0
    return np.packbits(bits, axis=1, bitorder="little").view(np.uint64).ravel()


def ref_top_margin(scores: np.ndarray) -> np.ndarray:
    if scores.shape[1] < 2:
        return np.full(scores.shape[0], np.inf)
    part = np.partition(scores, -2, axis=1)
    return part[:, -1] - part[:, -2]


_HEADER = struct.Struct("<IIIddd")


@dataclass
class RefHistory:
    window: int
    filled: int = 0
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    short_rate: float = 0.0
    sigs: np.ndarray = field(init=False)
    digests: np.ndarray = field(init=False)
    near: np.ndarray = field(init=False)
    boundary: np.ndarray = field(init=False)
    off_data: np.ndarray = field(init=False)
    near_count: int = field(init=False, default=0)
    boundary_count: int = field(init=False, default=0)
    off_data_count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.sigs = np.zeros(self.window, dtype=np.uint64)
        self.digests = np.zeros(self.window, dtype=np.uint64)
        self.near = np.zeros(self.window, dtype=bool)
        self.boundary = np.zeros(self.window, dtype=bool)
        self.off_data = np.zeros(self.window, dtype=bool)

    def seen(self, digest: np.uint64) -> bool:
        return bool((self.digests[: self.filled] == digest).any())

    def nearest(self, sig: np.uint64) -> int:
        if self.filled == 0:
            return 64
        return int(np.bitwise_count(self.sigs[: self.filled] ^ sig).min())

    def push(
        self, sig: Any, digest: Any, near: bool, boundary: bool, now: float, off: bool = False
    ) -> None:
        slot = self.count % self.window
        if self.filled == self.window:
            self.near_count -= int(self.near[slot])
            self.boundary_count -= int(self.boundary[slot])
            self.off_data_count -= int(self.off_data[slot])
        self.near_count += near
        self.boundary_count += boundary
        self.off_data_count += off
        self.sigs[slot] = sig
        self.digests[slot] = digest
        self.near[slot] = near
        self.boundary[slot] = boundary
        self.off_data[slot] = off
        self.filled = min(self.filled + 1, self.window)
        if self.count == 0:
            self.first_seen = now
        decay = math.exp(-max(0.0, now - self.last_seen) / BURST_HALF_LIFE) if self.count else 0.0
        self.short_rate = self.short_rate * decay + 1.0 / BURST_HALF_LIFE
        self.last_seen = now
        self.count += 1

    def scores(self, policy: MonitorPolicy) -> dict[str, float]:
        n = self.filled
        if n == 0:
            return {"near_duplicate": 0.0, "boundary": 0.0, "off_data": 0.0, "burst": 0.0}
        dup = self.near_count / n
        answered = n - self.off_data_count
        rate = self.boundary_count / answered if answered >= policy.min_queries else 0.0
        benign = policy.benign_boundary_rate
        boundary = max(0.0, rate - benign) / (1.0 - benign)
        off_rate, benign_off = self.off_data_count / n, policy.benign_off_data_rate
        off_data = max(0.0, off_rate - benign_off) / (1.0 - benign_off)
        burst = 0.0
        lifetime = self.last_seen - self.first_seen
        recent = self.short_rate * BURST_HALF_LIFE
        if (
            self.count >= 2 * policy.min_queries
            and lifetime > BURST_HALF_LIFE
            and recent >= BURST_MIN_RECENT
        ):
            long_rate = self.count / lifetime
            ratio = self.short_rate / max(long_rate, 1e-9)
            burst = min(1.0, max(0.0, (ratio - 1.0) / (policy.burst_factor - 1.0)))
        return {"near_duplicate": dup, "boundary": boundary, "off_data": off_data, "burst": burst}

    def risk(self, policy: MonitorPolicy) -> tuple[float, list[str]]:
        if self.count < policy.min_queries:
            return 0.0, []
        signals = self.scores(policy)
        weights = {"near_duplicate": 1.0, "boundary": 1.0, "off_data": 1.0, "burst": BURST_WEIGHT}
        keep = 1.0
        for name, value in signals.items():
            keep *= 1.0 - weights[name] * value
        reasons = [f"{name}={value:.2f}" for name, value in signals.items() if value >= 0.2]
        return 1.0 - keep, reasons

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            self.window, self.filled, self.count, self.first_seen, self.last_seen, self.short_rate
        )
        flags = np.packbits(np.stack([self.near, self.boundary, self.off_data]), axis=1).tobytes()
        return head + self.sigs.tobytes() + self.digests.tobytes() + flags


async def ref_assess(mon: Monitor, ctx: QueryContext) -> None:
    """The monitor's assess as it was: every request through the general path."""
    if not mon.enabled or ctx.input is None or ctx.scores is None or not ctx.via_http:
        return
    rows = np.asarray(ctx.input)
    rows = rows.reshape(rows.shape[0], -1)
    scores = np.asarray(ctx.scores, dtype=np.float64)
    key = mon.key(ctx)
    try:
        history = await mon.store.load(key)
        history = history or RefHistory(mon.settings.window)  # type: ignore[assignment]
        sigs = ref_fingerprints(mon.fingerprinter(rows), rows)
        digests = row_digests(rows)
        margins = ref_top_margin(scores)
        now = time.time()
        fresh = np.zeros(len(sigs), dtype=bool)
        boundary = margins < mon.settings.boundary_margin
        for i, (sig, digest) in enumerate(zip(sigs, digests, strict=True)):
            if history.seen(digest):  # type: ignore[union-attr]
                continue
            near = history.nearest(sig) <= mon.settings.max_distance  # type: ignore[union-attr]
            history.push(sig, digest, near, bool(boundary[i]), now, False)  # type: ignore[union-attr]
            fresh[i] = True
        distributed = await mon._distributed(key, sigs[fresh], digests[fresh])
        await mon.store.save(key, history)  # type: ignore[arg-type]
    except Exception as exc:
        mon._storage_failed(ctx, exc)
        return
    risk, reasons = history.risk(mon.settings)  # type: ignore[union-attr]
    if distributed:
        risk = max(risk, mon.settings.thresholds.flag)
        reasons.append(f"distributed={distributed}")
    ctx.risk, ctx.risk_reasons = risk, reasons
    await mon._escalate(ctx, key, risk, reasons)


async def ref_check_block(mon: Monitor, ctx: QueryContext) -> None:
    """The monitor's check_block as it was (its in-process store awaited directly)."""
    if not mon.enabled:
        return
    try:
        block = await mon.store.blocked(mon.key(ctx))
    except Exception as exc:
        mon._storage_failed(ctx, exc)
        return
    if block is not None:
        retry = max(1, math.ceil(block["until"] - time.time()))
        ctx.risk = 1.0
        raise ctx.reject(
            Blocked(
                f"this key is blocked for {retry} s after probing was detected ({block['reason']})",
                headers={"Retry-After": str(retry)},
            ),
            "monitor",
        )


# ---------------------------------------------------------------------- helpers


def outcome(call: Callable[[], Any]) -> tuple[Any, list[tuple[type[Warning], str]]]:
    """What a call returned or raised, and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: Any = ("ok", call())
        except Exception as exc:
            result = ("raised", type(exc).__name__, str(exc))
    return result, [(w.category, str(w.message)) for w in caught]


def same_floats(a: np.ndarray, b: np.ndarray) -> None:
    """Equal values, NaN where NaN, and the same sign of every zero."""
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
    assert (np.signbit(a) == np.signbit(b)).all()


def same_outcome(fast: Any, ref: Any) -> None:
    (f_result, f_warn), (r_result, r_warn) = fast, ref
    assert f_warn == r_warn
    assert f_result[0] == r_result[0], (f_result, r_result)
    if f_result[0] == "raised":
        assert f_result == r_result
    elif isinstance(r_result[1], np.ndarray):
        same_floats(np.asarray(f_result[1]), r_result[1])
    else:
        same_floats(np.asarray([f_result[1]]), np.asarray([r_result[1]]))


# Special values the general path meets: ties, zeros of both signs, NaN, infinities, overflow.
SPECIAL = st.sampled_from(
    [0.0, -0.0, 0.5, 0.25, 1.0, 1e-300, -1.0, math.nan, math.inf, -math.inf, 1.7e308, -1.7e308]
)
SCORE = st.one_of(st.floats(-2.0, 2.0), SPECIAL, st.floats(allow_nan=True, allow_infinity=True))


# ---------------------------------------------------------------------- margins


@settings(max_examples=600, deadline=None)
@given(
    scores=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(0, 12)), elements=SCORE)
)
def test_top_margin_is_the_numpy_margin(scores: np.ndarray) -> None:
    """Any batch, one row or many: the same margins, the same warnings."""
    same_outcome(outcome(lambda: top_margin(scores)), outcome(lambda: ref_top_margin(scores)))
    one = scores[:1]
    same_outcome(outcome(lambda: first_margin(one)), outcome(lambda: ref_top_margin(one)[0].item()))


def test_top_margin_falls_back_where_numpy_decides() -> None:
    """Zeros of both signs on top, a NaN, inf - inf and overflow go through numpy."""
    rows: list[list[float]] = [
        [0.0, -0.0, -1.0],
        [-0.0, 0.0, -1.0],
        [0.1, math.nan, 0.2],
        [math.inf, math.inf, 0.0],
        [-math.inf, -math.inf],
        [1.7e308, -1.7e308],
        [math.inf, -math.inf, 1.0],
        [0.3, 0.3, 0.1],
        [0.7],
        [],
    ]
    for row in rows:
        scores = np.asarray([row], dtype=np.float64).reshape(1, len(row))
        same_outcome(outcome(partial(top_margin, scores)), outcome(partial(ref_top_margin, scores)))
        same_outcome(
            outcome(partial(first_margin, scores)),
            outcome(lambda s=scores: ref_top_margin(s)[0].item()),
        )


# ---------------------------------------------------------------------- fingerprints


VALUE = st.one_of(
    st.floats(-20.0, 20.0), st.sampled_from([0.0, -0.0, 1e300, -1e300, math.inf, math.nan])
)


@settings(max_examples=300, deadline=None)
@given(
    rows=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(0, 12)), elements=VALUE),
    huge_center=st.booleans(),
    dtype=st.sampled_from(["float64", "float32", "float16", "int64", "uint8", "bool"]),
)
def test_fingerprints_and_digests_are_the_general_ones(
    rows: np.ndarray, huge_center: bool, dtype: str
) -> None:
    """One row or many, every dtype the fast path takes, offsets small and huge."""
    n = rows.shape[1]
    center = np.full(n, 1e300 if huge_center else 8.0)  # huge: the subtracting path
    fp = Fingerprinter(n, center, np.linspace(0.5, 4.0, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype != "float64":
            rows = np.nan_to_num(rows, posinf=0.0, neginf=0.0).clip(-20, 20).astype(dtype)
    fast = outcome(lambda: fp(rows))
    same_outcome(fast, outcome(lambda: ref_fingerprints(fp, rows)))
    flat = rows[:1].astype(np.float64, copy=False)
    ref_one = outcome(lambda: ref_fingerprints(fp, rows[:1])[0].item())
    (kind, *value), warned = outcome(lambda: fp.one(flat))
    assert (kind, warned) == (ref_one[0][0], ref_one[1])
    if kind == "ok":
        assert value[0] == ref_one[0][1] and type(value[0]) is int
    assert row_digest(flat) == int(row_digests(rows[:1])[0])
    singles = [row_digest(rows[i : i + 1].astype(np.float64)) for i in range(len(rows))]
    assert row_digests(rows).tolist() == singles


# ---------------------------------------------------------------------- history


@settings(max_examples=200, deadline=None)
@given(
    window=st.sampled_from([8, 9, 16, 64]),
    steps=st.lists(
        st.tuples(
            st.integers(0, 2**64 - 1),  # a fresh fingerprint, or one near a recent one
            st.integers(-1, 70),  # which recent digest to repeat (-1: a fresh one)
            st.integers(0, 64),  # bits flipped from a recent fingerprint
            st.booleans(),  # boundary
            st.booleans(),  # off data
            st.floats(0.0, 30.0),  # seconds since the last query
            st.integers(-2, 70),  # distance limit
        ),
        max_size=150,
    ),
    min_queries=st.integers(1, 20),
)
def test_history_matches_the_general_history(
    window: int, steps: list[tuple[int, int, int, bool, bool, float, int]], min_queries: int
) -> None:
    """seen, is_near, observe, push and risk on random streams with retries and near
    duplicates: the same answers and the same bytes as the general history."""
    fast, ref = History(window), RefHistory(window)
    policy = MonitorPolicy(min_queries=min_queries)
    rng = np.random.default_rng(len(steps))
    now = 1000.0
    for sig, repeat, flips, boundary, off, dt, limit in steps:
        now += dt
        recent = ref.filled
        if recent and repeat >= 0:  # an exact retry of a recent digest
            digest = int(ref.digests[repeat % recent])
        else:
            digest = int(rng.integers(0, 2**64, dtype=np.uint64))
        if recent and flips < 64:
            sig = int(ref.sigs[flips % recent]) ^ sum(1 << b for b in range(flips % 9))
        assert fast.seen(digest) == ref.seen(np.uint64(digest))
        assert fast.seen(np.uint64(digest)) == ref.seen(np.uint64(digest))
        assert fast.nearest(sig) == ref.nearest(np.uint64(sig))
        assert fast.is_near(sig, limit) == (ref.nearest(np.uint64(sig)) <= limit)
        pushed = not ref.seen(np.uint64(digest))
        if pushed:
            near = ref.nearest(np.uint64(sig)) <= limit
            ref.push(np.uint64(sig), np.uint64(digest), near, boundary, now, off)
        assert fast.observe(sig, digest, limit, boundary, now, off) == pushed
        assert fast.to_bytes() == ref.to_bytes()
        assert (fast.near_count, fast.boundary_count, fast.off_data_count) == (
            ref.near_count,
            ref.boundary_count,
            ref.off_data_count,
        )
        assert type(fast.near_count) is int and type(fast.off_data_count) is int
        assert fast.scores(policy) == ref.scores(policy)
        assert fast.risk(policy) == ref.risk(policy)


def test_seen_ignores_matches_across_two_items() -> None:
    """A digest whose bytes straddle two stored digests is not a retry."""
    h = History(8)
    h.push(1, 0x1122334455667788, False, False, 1.0)
    h.push(2, 0x99AABBCCDDEEFF00, False, False, 2.0)
    straddling = h.digests.tobytes()[4:12]
    assert not h.seen(int.from_bytes(straddling, "little" if np.little_endian else "big"))
    assert h.seen(0x99AABBCCDDEEFF00) and not h.seen(0)


# ---------------------------------------------------------------------- the monitor


def monitors(**monitor: Any) -> tuple[Monitor, Monitor]:
    policy = Policy.model_validate(
        {"tiers": {"public": {}}, "input": {"shape": [6], "min": 0, "max": 16}, "monitor": monitor}
    )
    return Monitor(policy), Monitor(policy)


def request(
    mon: Monitor,
    principal: str,
    rows: Any,
    scores: Any,
    assess: Callable[[Monitor, QueryContext], Any],
    check: Callable[[Monitor, QueryContext], Any],
) -> tuple[Any, ...]:
    ctx = QueryContext(endpoint="predict", principal=principal, tier_name="public")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            run_without_io(check(mon, ctx))
            ctx.input, ctx.scores = rows, scores
            run_without_io(assess(mon, ctx))
            raised = None
        except GuardRejection as exc:
            raised = (type(exc).__name__, str(exc), dict(exc.headers or {}))
    risk = ctx.risk
    return (
        raised,
        "nan" if risk != risk else risk,
        ctx.risk_reasons,
        ctx.flagged,
        ctx.degraded,
        [(d.control, d.outcome, d.detail) for d in ctx.decisions],
        [(w.category, str(w.message)) for w in caught],
    )


def fast_check(mon: Monitor, ctx: QueryContext) -> Any:
    return mon.check_block(ctx)


def fast_assess(mon: Monitor, ctx: QueryContext) -> Any:
    return mon.assess(ctx)


@pytest.mark.parametrize(
    "monitor",
    [
        {"min_queries": 4, "window": 16, "block_seconds": 4},
        {
            "min_queries": 3,
            "window": 8,
            "max_distance": 20,
            "distributed_min_principals": 2,
            "block_seconds": 2,
        },
        {"min_queries": 2, "window": 8, "actions": {"block": False}, "boundary_margin": 0.3},
    ],
)
@pytest.mark.parametrize("seed", range(4))
def test_monitor_matches_the_general_monitor(
    monitor: dict[str, Any], seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random streams of one-row requests (and some batches) from a few principals, with
    exact retries, near duplicates, ties, NaN and infinite scores: the same verdicts,
    decisions, warnings, blocks and stored histories as the general monitor's."""
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    fast, ref = monitors(**monitor)
    rng = np.random.default_rng(seed)
    sent: list[np.ndarray] = []
    for i in range(400):
        clock[0] += float(rng.choice([0.01, 0.5, 3.0, 1000.0], p=[0.5, 0.3, 0.19, 0.01]))
        principal = f"p{rng.integers(4)}"
        n = 1 if rng.random() < 0.85 else int(rng.integers(2, 6))
        kind = rng.random()
        if sent and kind < 0.2:  # exact retry
            rows = sent[int(rng.integers(len(sent)))][:1].copy()
            rows = np.repeat(rows, n, axis=0)
        elif sent and kind < 0.5:  # near duplicate
            rows = sent[int(rng.integers(len(sent)))][:1] + rng.normal(0, 0.05, (n, 6))
        else:
            rows = rng.uniform(0, 16, (n, 6))
        sent.append(rows)
        scores = rng.dirichlet(np.ones(4), n)
        pick = rng.random()
        if pick < 0.1:
            scores[:, :2] = 0.4  # a tie on top
        elif pick < 0.13:
            scores[0, int(rng.integers(4))] = math.nan
        elif pick < 0.15:
            scores[0, :2] = math.inf  # inf - inf: numpy warns (an error under pytest)
        elif pick < 0.17:
            scores[0, 1] = -math.inf
        elif pick < 0.19:
            scores = scores[:, :1]  # one class: no margin
        elif pick < 0.21:
            scores = scores.astype(np.float32)
        if rng.random() < 0.1:
            rows = rows.astype(np.float32)
        elif rng.random() < 0.05:
            rows = (rows * 10).astype(np.int64)
        got = request(fast, principal, rows, scores, fast_assess, fast_check)
        want = request(ref, principal, rows, scores, ref_assess, ref_check_block)
        assert got == want, (i, principal, n)
        f_store, r_store = fast.store, ref.store
        key = fast.principal_key(principal)
        f_hist = run_without_io(f_store.load(key))
        r_hist = run_without_io(r_store.load(key))
        assert (f_hist is None) == (r_hist is None)
        if f_hist is not None:
            assert f_hist.to_bytes() == r_hist.to_bytes()  # type: ignore[union-attr]
        assert sorted(run_without_io(f_store.blocks()), key=str) == sorted(
            run_without_io(r_store.blocks()), key=str
        )


def ref_observe(
    mon: Monitor,
    history: RefHistory,
    sigs: np.ndarray,
    digests: np.ndarray,
    margins: np.ndarray | None,
    off_data: np.ndarray | None,
    now: float,
) -> np.ndarray:
    """The monitor's _observe as it was."""
    fresh = np.zeros(len(sigs), dtype=bool)
    limit = mon.settings.max_distance
    boundary = (
        np.zeros(len(sigs), dtype=bool)
        if margins is None
        else margins < mon.settings.boundary_margin
    )
    off = np.zeros(len(sigs), dtype=bool) if off_data is None else off_data
    for i, (sig, digest) in enumerate(zip(sigs, digests, strict=True)):
        if history.seen(digest):
            continue
        near = history.nearest(sig) <= limit
        history.push(sig, digest, near, bool(boundary[i]), now, bool(off[i]))
        fresh[i] = True
    return fresh


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(
        st.tuples(
            st.lists(st.integers(0, 40), min_size=0, max_size=12),  # rows, by a small pool id
            st.sampled_from(["margins", "refused"]),
            st.integers(0, 2**32),
        ),
        max_size=25,
    )
)
def test_observe_matches_the_general_observe(batches: list[tuple[list[int], str, int]]) -> None:
    """Batches (answered, with margins, or refused, off-data) with repeats inside and
    across batches: the same fresh rows and the same history as the general loop."""
    mon, _ = monitors(min_queries=2, window=8, max_distance=6)
    fast, ref = History(8), RefHistory(8)
    rng = np.random.default_rng(7)
    pool_sigs = rng.integers(0, 2**64, 41, dtype=np.uint64)
    pool_sigs[1::2] = pool_sigs[::2][: len(pool_sigs[1::2])] ^ np.uint64(0b1011)  # near pairs
    pool_digests = rng.integers(0, 2**64, 41, dtype=np.uint64)
    for ids, kind, seed in batches:
        sigs, digests = pool_sigs[ids], pool_digests[ids]
        margins = off = None
        if kind == "margins":
            margins = np.random.default_rng(seed).choice([0.0, 0.1, 0.3, 0.9, np.nan], len(ids))
        else:
            off = np.ones(len(ids), dtype=bool)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(time, "time", lambda: 5000.0)
            got = mon._observe(fast, sigs, digests, margins, off)
        want = ref_observe(mon, ref, sigs, digests, margins, off, 5000.0)
        assert got.dtype == want.dtype and got.tolist() == want.tolist()
        assert fast.to_bytes() == ref.to_bytes()
        assert fast.risk(mon.settings) == ref.risk(mon.settings)
