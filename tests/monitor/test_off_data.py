"""The off_data signal: a key whose rows the reference profile keeps refusing is probing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import Blocked, InvalidInput, Policy, protect
from bento_invguard.context import QueryContext
from bento_invguard.monitor import Monitor, run_without_io
from bento_invguard.monitor.history import SIGNALS
from bento_invguard.validation import InputValidator

from ..conftest import forget_bentoml_metrics, policy_dict
from .conftest import MODEL, PROFILE, X_TEST, policy


def probes(n: int, scale: float = 2.0, seed: int = 0) -> np.ndarray:
    """Reverse-correlation probes around the mean digit, as the label-only attack sends them."""
    x = X_TEST[::2]
    lower, upper = x.min(axis=0), x.max(axis=0)
    noise = np.random.default_rng(seed).standard_normal((n, 64)) * x.std(axis=0)
    noise[:, upper == lower] = 0.0
    rows: np.ndarray = np.clip(x.mean(axis=0) + scale * noise, lower, upper)
    return rows


def request(mon: Monitor, principal: str, rows: np.ndarray) -> str:
    """One request as the guard runs it: block check, validation, then monitor or refusal."""
    ctx = QueryContext(endpoint="predict", principal=principal, tier_name="public")
    try:
        run_without_io(mon.check_block(ctx))
    except Blocked:
        return "blocked"
    try:
        ctx.input = InputValidator(policy().input, PROFILE)(ctx, rows)
    except InvalidInput as refusal:
        assert "profile" == refusal.check
        run_without_io(mon.observe_refused(ctx, len(rows)))
        return "refused"
    ctx.scores = MODEL.predict_proba(rows)
    no = np.zeros(len(rows), dtype=bool)  # the shared view's verdict: neither probing nor repeat
    try:
        run_without_io(mon.assess(ctx, no, no))
    except Blocked:
        return "blocked"
    return "answered"


def test_reverse_correlation_is_blocked_within_200_queries() -> None:
    """20-probe requests are refused as off the data; the key is blocked by its third request."""
    mon = Monitor(policy())
    rows = probes(400)
    outcomes = [request(mon, "attacker", rows[i : i + 20]) for i in range(0, 400, 20)]
    blocked_at = 20 * (outcomes.index("blocked") + 1)
    assert blocked_at <= 200
    assert {"refused"} == set(outcomes[: outcomes.index("blocked")])
    assert {"blocked"} == set(outcomes[outcomes.index("blocked") :])
    reason = run_without_io(mon.blocks())[0]["reason"]
    assert "off_data" in reason


@pytest.mark.parametrize("scale", [1.5, 1.0, 0.5])
def test_smaller_probes_are_blocked_too(scale: float) -> None:
    """Probes nearer the data pass the profile more often; then the answered ones hug the
    boundary (the refused rows, without scores, do not dilute that signal): blocked by 200."""
    mon = Monitor(policy())
    rows = probes(400, scale=scale, seed=3)
    outcomes = [request(mon, "attacker", rows[i : i + 20]) for i in range(0, 400, 20)]
    assert "blocked" in outcomes
    assert 20 * (outcomes.index("blocked") + 1) <= 200


def test_one_probe_per_request_is_blocked_too() -> None:
    """Single-row probes: the refused ones count even when others are answered."""
    mon = Monitor(policy())
    rows = probes(200, seed=1)
    outcomes = [request(mon, "attacker", rows[i : i + 1]) for i in range(200)]
    assert "blocked" in outcomes
    assert outcomes.index("blocked") < 40


def test_benign_digits_with_an_odd_bad_row_are_not_flagged() -> None:
    """Natural digits, one request in 25 carrying an off-data row: never flagged or blocked."""
    mon = Monitor(policy())
    odd = probes(50, scale=4.0, seed=2)
    odd = odd[PROFILE.outliers(odd)]
    risks = []
    for i in range(400):
        rows = X_TEST[i : i + 1] if i % 25 else odd[i // 25 : i // 25 + 1]
        assert "blocked" != request(mon, "user", rows)
        history = run_without_io(mon.store.load(mon.principal_key("user")))
        assert history is not None
        risks.append(history.risk(mon.settings)[0])
    assert max(risks) < mon.settings.thresholds.flag


def test_refused_rows_count_whatever_the_request_holds() -> None:
    """Every row of a refused request counts as off the data: one request of 20 rows
    fills 20 of the key's window."""
    mon = Monitor(policy())
    ctx = QueryContext(endpoint="predict", principal="p", tier_name="public")
    run_without_io(mon.observe_refused(ctx, 20))
    history = run_without_io(mon.store.load(mon.principal_key("p")))
    assert history is not None
    assert (20, 20) == (history.count, int(history.flags[SIGNALS.index("off_data")].sum()))


@pytest.mark.redis
def test_off_data_counts_on_redis(redis_url: str) -> None:
    """With shared state, refusals observed by one worker block the key on another."""
    import asyncio

    async def scenario() -> bool:
        p = policy().model_copy(update={"storage": redis_url})
        worker_a, worker_b = Monitor(p), Monitor(p)
        for _ in range(3):
            ctx = QueryContext(endpoint="predict", principal="attacker", tier_name="public")
            await worker_a.observe_refused(ctx, 20)
        ctx = QueryContext(endpoint="predict", principal="attacker", tier_name="public")
        try:
            await worker_b.check_block(ctx)
            blocked = False
        except Blocked:
            blocked = True
        await worker_a.aclose()
        await worker_b.aclose()
        return blocked

    assert asyncio.run(scenario())


def test_http_off_data_probes_get_422_then_403(tier_keys: dict[str, str], tmp_path: Path) -> None:
    """Behind a real guarded app: probes are refused 422 (check profile), then the key is 403."""
    forget_bentoml_metrics()
    profile_path = PROFILE.save(tmp_path / "digits.profile.json")
    data = policy_dict(
        tier_keys,
        input={"shape": [64], "dtype": "float", "min": 0.0, "max": 16.0},
    )
    data["input"]["profile"] = str(profile_path)  # type: ignore[index]

    @protect(Policy.model_validate(data))
    @bentoml.service(name="digits_watched")
    class Digits:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            scores: np.ndarray = MODEL.predict_proba(np.asarray(x, dtype=float))
            return scores

    key = tier_keys["public"]

    def post(rows: np.ndarray) -> Any:
        body = json.dumps({"x": rows.tolist()})
        return client.post("/predict", content=body, headers={"X-API-Key": key})

    with TestClient(Digits.to_asgi(), raise_server_exceptions=False) as client:
        assert 200 == post(X_TEST[:20]).status_code
        rows = probes(200)
        answers = [post(rows[i : i + 20]) for i in range(0, 200, 20)]
        statuses = [a.status_code for a in answers]
        assert 422 == statuses[0]
        assert "profile" == answers[0].json()["check"]
        assert 403 in statuses
        assert all(s == 403 for s in statuses[statuses.index(403) :])
        other = tier_keys["partner"]
        body = json.dumps({"x": X_TEST[:1].tolist()})
        assert (
            200 == client.post("/predict", content=body, headers={"X-API-Key": other}).status_code
        )
