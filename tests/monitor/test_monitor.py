"""The per-key monitor: probing flagged, degraded, blocked; benign traffic and retries not."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from bento_invguard import Blocked
from bento_invguard.monitor import History, Monitor, run_without_io

from .conftest import X_TEST, Clock, ask, context, policy


def outcome(mon: Monitor, principal: str, probing: bool) -> str:
    """What one confident single-row query leads to: block, degrade, flag or none."""
    try:
        ctx = ask(mon, principal, probing=probing)
    except Blocked:
        return "block"
    return "degrade" if ctx.degraded else "flag" if ctx.flagged else "none"


def escalate(mon: Monitor, principal: str) -> list[str]:
    """12 clean queries, then probing ones until the key is blocked (at most 60)."""
    steps = [outcome(mon, principal, False) for _ in range(12)]
    for _ in range(60):
        steps.append(outcome(mon, principal, True))
        if "block" == steps[-1]:
            break
    return steps


def test_a_probing_key_is_flagged_then_degraded_then_blocked() -> None:
    """The share of probing queries is the risk: 12 of 24 flag (0.5), 28 of 40 degrade
    (0.7), 36 of 48 block (0.75); the block then holds, with a Retry-After."""
    mon = Monitor(policy(), clock=Clock())
    steps = escalate(mon, "attacker")
    expected = ["none"] * 23 + ["flag"] * 16 + ["degrade"] * 8 + ["block"]
    assert expected == steps
    with pytest.raises(Blocked) as info:
        ask(mon, "attacker")
    assert "blocked" == info.value.reason
    assert 900 == int(info.value.headers["Retry-After"])
    assert "none" == outcome(mon, "bystander", False)


def test_without_block_a_probing_key_stays_degraded() -> None:
    """With blocking off, a key that probes on is degraded (and flagged), never blocked."""
    mon = Monitor(policy(actions={"block": False}), clock=Clock())
    for _ in range(60):
        ctx = ask(mon, "probe", probing=True)
    assert (True, True, 1.0) == (ctx.degraded, ctx.flagged, ctx.risk)
    assert ["probing=1.00"] == ctx.risk_reasons
    assert "degrade" in [d.outcome for d in ctx.decisions]


def test_the_gauge_hears_a_block_and_its_expiry() -> None:
    """on_blocks gets +1 when a key is blocked and -1 once the block has expired."""
    clock, heard = Clock(), list[int]()
    mon = Monitor(policy(), clock=clock, on_blocks=heard.append)
    assert "block" == escalate(mon, "attacker")[-1]
    assert [1] == heard
    clock.now += 899
    with pytest.raises(Blocked):
        ask(mon, "attacker")
    assert [1] == heard
    clock.now += 1
    ask(mon, "attacker")  # served: the block is over
    assert [1, -1] == heard


def test_the_gauge_hears_a_cleared_block() -> None:
    """Clearing a block tells on_blocks -1 at once; clearing it again tells nothing."""
    heard: list[int] = []
    mon = Monitor(policy(), clock=Clock(), on_blocks=heard.append)
    escalate(mon, "a")
    escalate(mon, "b")
    assert [1, 1] == heard
    assert run_without_io(mon.unblock("default:a"))
    assert not run_without_io(mon.unblock("default:a"))
    assert [1, 1, -1] == heard


def test_one_warning_per_escalation_step_and_principal(caplog: pytest.LogCaptureFixture) -> None:
    """Two probing keys: each gets exactly one WARNING flagged, one degraded, one blocked,
    naming the principal's id (not its state key with the model version) and nothing else
    about it."""
    mon = Monitor(policy(), model_version=lambda: "invguard_digits:abc123", clock=Clock())
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        for principal in ("mallory", "trudy"):
            escalate(mon, principal)
            for _ in range(3):  # blocked: no more news
                with pytest.raises(Blocked):
                    ask(mon, principal, probing=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    steps = [
        (principal, step)
        for message in warnings
        for principal in ("mallory", "trudy")
        for step in ("flagged", "degraded", "blocked for")
        if f"principal '{principal}' {step}" in message
    ]
    expected = [
        (p, s) for p in ("mallory", "trudy") for s in ("flagged", "degraded", "blocked for")
    ]
    assert expected == steps
    assert 6 == len(warnings)
    assert not any("abc123" in message for message in warnings)


def test_a_degraded_key_that_keeps_probing_logs_nothing_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With blocking off: one WARNING flagged, one degraded, then 60 more probing queries log
    nothing. A key whose risk jumps straight past the flag step gets the degrade one only."""
    mon = Monitor(policy(actions={"block": False}), clock=Clock())
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        assert "degrade" == escalate(mon, "probe")[-1]
        for _ in range(60):
            assert ask(mon, "probe", probing=True).degraded
        for _ in range(60):
            ask(mon, "jumper", probing=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [("probe", "flagged"), ("probe", "degraded"), ("jumper", "degraded")] == [
        (m.split("'")[1], m.split("'")[2].split()[0]) for m in warnings
    ]


def test_refused_probing_rows_count() -> None:
    """Rows the view refused as probing (on_detect: refuse) fill the key's history: the key
    is blocked from its next request on, the refused one keeps its refusal."""
    mon = Monitor(policy(), clock=Clock())
    for _ in range(3):
        ctx = context("attacker")
        run_without_io(mon.check_block(ctx))
        run_without_io(mon.observe_refused(ctx, 5, probing=True))
    assert ctx.flagged and "block" == ctx.decisions[-1].outcome
    history = run_without_io(mon.store.load(mon.principal_key("attacker")))
    assert history is not None
    assert (15, 1.0) == (history.count, history.scores(mon.settings)["probing"])
    with pytest.raises(Blocked):
        run_without_io(mon.check_block(context("attacker")))


def test_benign_traffic_and_exact_retries_are_not_flagged() -> None:
    """Held-out digits in random order raise no flag; 200 retries of one query are one query."""
    mon = Monitor(policy(), clock=Clock())
    rng = np.random.default_rng(3)
    for principal in ("alice", "bob"):
        for i in rng.permutation(len(X_TEST))[:300]:
            ctx = ask(mon, principal, X_TEST[i : i + 1])
            assert (False, []) == (ctx.flagged, ctx.risk_reasons)
    ask(mon, "retrier", X_TEST[:1])
    for _ in range(200):
        ctx = ask(mon, "retrier", X_TEST[:1], repeat=True)
    assert 0.0 == ctx.risk
    history = run_without_io(mon.store.load(mon.principal_key("retrier")))
    assert history is not None and 1 == history.count


def test_state_is_per_model_version() -> None:
    """A block under one model version does not carry over to a retrained model."""
    version = ["v1"]
    mon = Monitor(policy(), model_version=lambda: version[0], clock=Clock())
    assert "block" == escalate(mon, "attacker")[-1]
    version[0] = "v2"
    assert "none" == outcome(mon, "attacker", False)  # a fresh baseline
    version[0] = "v1"
    assert "block" == outcome(mon, "attacker", False)


def test_memory_is_bounded_by_max_principals() -> None:
    """No more than max_principals histories are kept."""
    mon = Monitor(policy(max_principals=10), clock=Clock())
    for p in range(50):
        ask(mon, f"p{p}")
    assert 10 == len(mon.store.histories)  # type: ignore[attr-defined]


def test_history_round_trips_through_bytes() -> None:
    """The Redis encoding of a history is lossless (and pickle-free); another window
    starts afresh."""
    h = History(16)
    rng = np.random.default_rng(1)
    for i in range(20):
        h.push(rng.random((3, 2)) < 0.4, float(i))
    back = History.from_bytes(h.to_bytes(), 16)
    assert h.flags.tolist() == back.flags.tolist()
    assert (h.count, h.filled, h.first_seen, h.last_seen, h.short_rate) == (
        back.count,
        back.filled,
        back.first_seen,
        back.last_seen,
        back.short_rate,
    )
    assert h.scores(policy().monitor) == back.scores(policy().monitor)
    assert 0 == History.from_bytes(h.to_bytes(), 32).count  # window changed: fresh


def test_blocks_can_be_listed_and_cleared() -> None:
    """An operator lists blocks with their reason and clears one; the key starts afresh."""
    mon = Monitor(policy(), clock=Clock())
    escalate(mon, "attacker")
    blocks = run_without_io(mon.blocks())
    assert ["default:attacker"] == [b["principal"] for b in blocks]
    assert "probing=" in blocks[0]["reason"]
    assert run_without_io(mon.unblock("default:attacker"))
    assert [] == run_without_io(mon.blocks())
    assert "none" == outcome(mon, "attacker", True)  # a fresh history
