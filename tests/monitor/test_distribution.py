"""The per-key distribution signal: calibrated on held-out digits, it catches synthetic
streams (uniform draws, blends) and leaves natural traffic alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bento_invguard.context import QueryContext
from bento_invguard.monitor import DistributionReference, History, Monitor, run_without_io

from .conftest import MODEL, PROFILE, X_TEST, context, policy

REFERENCE_ROWS, NATURAL_ROWS = X_TEST[:225], X_TEST[225:]
REFERENCE = DistributionReference.fit(PROFILE, REFERENCE_ROWS, target_false_positive_rate=1e-4)


@pytest.fixture(scope="module")
def reference_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return REFERENCE.save(tmp_path_factory.mktemp("dist") / "digits.distribution.json")


def blends(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Convex mixes of ``k`` natural rows (the attacker's few real inputs)."""
    idx = rng.integers(0, len(REFERENCE_ROWS), (n, k))
    weights = rng.dirichlet(np.ones(k), n)
    mixed: np.ndarray = (REFERENCE_ROWS[idx] * weights[:, :, None]).sum(axis=1)
    return mixed


def first_flag(mon: Monitor, principal: str, rows: np.ndarray) -> int | None:
    """Send ``rows`` one per query; the row count at which the key is first flagged."""
    for i, row in enumerate(rows):
        ctx = query(mon, principal, row[None, :])
        if ctx.flagged or ctx.rejection is not None:
            return i + 1
    return None


def query(mon: Monitor, principal: str, rows: np.ndarray) -> QueryContext:
    ctx = context(principal)
    ctx.input = rows
    ctx.scores = MODEL.predict_proba(rows)
    n = len(rows)
    try:
        run_without_io(mon.assess(ctx, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)))
    except Exception as exc:  # a block: the rejection is on the context
        assert ctx.rejection is not None, exc
    return ctx


@pytest.mark.parametrize("rate", [0.05, 0.02])
def test_calibrated_limit_holds_the_named_rate(rate: float) -> None:
    """At rates measurable on fresh natural streams, the share of steps past the tail's
    limit for a rate is at most about that rate (3 times it) and not far below (a 20th):
    the calibration errs on the benign side, since every calibration stream also carries
    its half's own distance from the reference's centre. The streams are built as the
    calibration's are (each repeats its own pool, as large as a calibration pool: half the
    reference rows; 1,000 rows), from digits neither the profile nor the reference saw."""
    ref = REFERENCE
    limit = ref.tail.limit(rate)
    rng = np.random.default_rng(5)
    stats = ref.statistics(NATURAL_ROWS)
    above = steps = 0
    for _ in range(100):
        pool = stats[rng.integers(0, len(stats), len(REFERENCE_ROWS) // 2)]
        total, weight2 = np.zeros(ref.size), 0.0
        for i, s in enumerate(pool[rng.integers(0, len(pool), 1000)]):
            total, weight2 = total * ref.decay + s, weight2 * ref.decay**2 + 1.0
            if i + 1 >= ref.min_rows:
                steps += 1
                above += float(total @ total) / weight2 > limit
    assert rate / 20 <= above / steps <= rate * 3


def test_natural_principals_are_not_flagged(reference_path: Path) -> None:
    """30 principals x 300 natural queries (digits never seen by the profile or the
    reference): none is flagged."""
    mon = Monitor(policy(distribution=str(reference_path), min_queries=12))
    rng = np.random.default_rng(1)
    flagged = [
        first_flag(mon, f"user{p}", NATURAL_ROWS[rng.integers(0, len(NATURAL_ROWS), 300)])
        for p in range(30)
    ]
    assert [None] * 30 == flagged


@pytest.mark.parametrize("kind", ["uniform", "blend2", "blend3"])
def test_synthetic_streams_are_flagged_within_500_rows(reference_path: Path, kind: str) -> None:
    """Uniform draws over the input range and blends of 2 or 3 natural digits: the key is
    flagged within 500 rows by the distribution signal alone (boundary hugging off)."""
    mon = Monitor(policy(distribution=str(reference_path), boundary_margin=1e-12))
    rng = np.random.default_rng(2)
    rows = rng.uniform(0, 16, (500, 64)) if kind == "uniform" else blends(rng, 500, int(kind[-1]))
    at = first_flag(mon, "attacker", rows)
    assert at is not None and at <= 500
    ctx = query(mon, "attacker", rows[:1])
    assert any(r.startswith("distribution=") for r in ctx.risk_reasons)


def test_without_a_reference_the_signal_is_off() -> None:
    """No ``monitor.distribution``: blends of 3 digits are not flagged by the monitor."""
    mon = Monitor(policy(boundary_margin=1e-12))
    assert mon.distribution is None
    assert first_flag(mon, "attacker", blends(np.random.default_rng(3), 300, 3)) is None


def test_running_sum_survives_the_byte_encoding() -> None:
    """A history's running sum, its weights and rows come back from its bytes."""
    h = History(64)
    h.push(np.zeros((3, 2), dtype=bool), 1.0)
    h.add_statistics(REFERENCE.statistics(X_TEST[:2]), REFERENCE.decay)
    back = History.from_bytes(h.to_bytes(), 64)
    np.testing.assert_array_equal(h.running, back.running)
    assert h.running_rows == back.running_rows


def test_reference_round_trips_as_json(tmp_path: Path) -> None:
    """Saved and loaded, the reference gives the same statistics."""
    back = DistributionReference.load(REFERENCE.save(tmp_path / "ref.json"))
    np.testing.assert_allclose(REFERENCE.statistics(X_TEST[:5]), back.statistics(X_TEST[:5]))


def test_the_limit_is_per_half_life() -> None:
    """The monitor's limit is the tail's at the target rate per ``half_life`` rows, and
    a lower rate gives a higher limit."""
    assert REFERENCE.tail.limit(1e-4 / REFERENCE.half_life) == pytest.approx(REFERENCE.limit)
    assert REFERENCE.calibrated(1e-6).limit > REFERENCE.limit


@pytest.mark.redis
def test_redis_workers_share_the_running_sum(redis_url: str, reference_path: Path) -> None:
    """Two monitors on one Redis take turns with a key sending blends of 3: the running
    sum is shared, so the key is flagged as soon as with one worker."""

    async def scenario() -> int | None:
        p = policy(distribution=str(reference_path)).model_copy(update={"storage": redis_url})
        workers = [Monitor(p), Monitor(p)]
        rows = blends(np.random.default_rng(2), 500, 3)
        try:
            for i, row in enumerate(rows):
                ctx: Any = context("redis-attacker")
                ctx.input, ctx.scores = row[None, :], MODEL.predict_proba(row[None, :])
                try:
                    await workers[i % 2].assess(ctx, np.zeros(1, bool), np.zeros(1, bool))
                except Exception:
                    return i + 1
                if ctx.flagged:
                    return i + 1
            return None
        finally:
            for w in workers:
                await w.aclose()

    alone = first_flag(
        Monitor(policy(distribution=str(reference_path))),
        "a",
        blends(np.random.default_rng(2), 500, 3),
    )
    assert alone == asyncio.run(scenario())


def test_rotating_keys_are_caught_along_the_crowds_direction(reference_path: Path) -> None:
    """Blends of 3 rotated over 10 keys (a few rows each): a key is flagged within 500
    rows by the distribution signal alone (boundary hugging off), and at that point its
    own test over every direction would not have flagged it: the crowd's direction did."""
    mon = Monitor(policy(distribution=str(reference_path), boundary_margin=1e-12))
    rows = blends(np.random.default_rng(4), 500, 3)
    at = next(
        (i + 1 for i, row in enumerate(rows) if query(mon, f"key{i % 10}", row[None]).flagged),
        None,
    )
    assert at is not None and at <= 500
    assert mon.distribution is not None and mon.signal is not None
    direction = mon.crowd.direction(mon.signal)
    assert direction is not None
    key = f"key{(at - 1) % 10}"
    history = run_without_io(mon.store.update(mon.principal_key(key), lambda h: None))[0]
    assert history.running_rows < 60
    assert 0.0 == mon.distribution.score(history.running, history.running_rows)
    assert 0.5 <= mon.distribution.score(history.running, history.running_rows, direction)


def test_natural_crowd_is_not_off(reference_path: Path) -> None:
    """20 principals taking turns with natural digits, 3,000 rows in all: the crowd never
    goes off, and no principal is flagged."""
    mon = Monitor(policy(distribution=str(reference_path)))
    rng = np.random.default_rng(6)
    flagged = set()
    assert mon.signal is not None
    for i, row in enumerate(NATURAL_ROWS[rng.integers(0, len(NATURAL_ROWS), 3000)]):
        if query(mon, f"user{i % 20}", row[None]).flagged:
            flagged.add(i % 20)
        assert mon.crowd.direction(mon.signal) is None
    assert set() == flagged


def test_projected_limit_holds_the_named_rate() -> None:
    """Along a fixed direction (as the crowd's is, to a natural key), the share of steps
    of fresh natural streams past the projected tail's limit for 5 % is at most 3 times
    that, and not far below: the limit a key meets while the crowd is off is calibrated."""
    ref, rate = REFERENCE, 0.05
    limit = ref.projected_tail.limit(rate)
    rng = np.random.default_rng(7)
    stats = ref.statistics(NATURAL_ROWS)
    above = steps = 0
    for _ in range(100):
        direction = rng.standard_normal(ref.size)
        direction /= np.linalg.norm(direction)
        pool = stats[rng.integers(0, len(stats), len(REFERENCE_ROWS) // 2)]
        total, weight2 = np.zeros(ref.size), 0.0
        for i, s in enumerate(pool[rng.integers(0, len(pool), 1000)]):
            total, weight2 = total * ref.decay + s, weight2 * ref.decay**2 + 1.0
            if i + 1 >= ref.crowd_min_rows:
                steps += 1
                above += float(total @ direction) ** 2 / weight2 > limit
    assert rate / 20 <= above / steps <= rate * 3
