"""The HTTP oracle: budget, rate limits, blocks, refusals, degrade detection (mock endpoint)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from bento_invguard.redteam.client import Oracle, Rejected, Stopped, one_hot_rows

from .conftest import Digits, MockEndpoint

URL = "http://model.test/predict"


def oracle_for(endpoint: MockEndpoint, budget: int = 100, **kwargs: object) -> Oracle:
    waits: list[float] = []
    oracle = Oracle(
        URL,
        key="k-123",
        budget=budget,
        shape=(64,),
        client=endpoint.client(),
        sleep=waits.append,
        **kwargs,  # type: ignore[arg-type]
    )
    oracle.waits = waits  # type: ignore[attr-defined]
    return oracle


def rows(digits: Digits, n: int) -> np.ndarray:
    return digits.x_test[:n].astype(np.float64)


def test_answers_and_request_body(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    """Rows go as {"x": [[...64 values]]} with the key; answers come back as (n, classes)."""
    mock = endpoint()
    seen: list[httpx.Request] = []
    client = httpx.Client(transport=httpx.MockTransport(lambda r: seen.append(r) or mock(r)))
    oracle = Oracle(URL, key="k-123", budget=10, shape=(64,), client=client)
    answers = oracle.ask(rows(digits, 3))
    assert answers.shape == (3, 10)
    assert np.allclose(answers, digits.model.predict_proba(digits.x_test[:3]))
    assert seen[0].headers["authorization"] == "Bearer k-123"
    assert len(mock.bodies[0]["x"]) == 3 and len(mock.bodies[0]["x"][0]) == 64
    assert oracle.stats.sent == oracle.stats.answered == 3
    assert oracle.classes == 10
    assert oracle.stats.answers == "scores"


def test_budget_stops_before_sending(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    mock = endpoint()
    oracle = oracle_for(mock, budget=5)
    oracle.ask(rows(digits, 4))
    with pytest.raises(Stopped) as stop:
        oracle.ask(rows(digits, 2))
    assert stop.value.reason == "budget"
    assert mock.requests == 1 and oracle.remaining == 1
    with pytest.raises(Stopped):  # stays stopped
        oracle.ask(rows(digits, 1))


def test_rate_limit_is_waited_out_and_not_charged(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """A 429 with a short Retry-After: wait, send again; its rows are sent, not spent."""
    mock = endpoint(script={2: (429, "rate_limited", {"Retry-After": "1"})})
    oracle = oracle_for(mock, budget=4)
    oracle.ask(rows(digits, 2))
    oracle.ask(rows(digits, 2))  # refused once, then answered
    assert oracle.waits == [1.0]  # type: ignore[attr-defined]
    s = oracle.stats
    assert (s.sent, s.answered, s.rejected["rate_limited"]) == (6, 4, 2)
    assert s.first_rate_limited_at == 4  # the refused request's rows included
    assert oracle.remaining == 0
    assert [e.status for e in oracle.log] == [200, 429, 200]


def test_long_retry_after_stops(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    mock = endpoint(script={1: (429, "rate_limited", {"Retry-After": "60"})})
    oracle = oracle_for(mock, max_wait=5.0)
    with pytest.raises(Stopped) as stop:
        oracle.ask(rows(digits, 1))
    assert stop.value.reason == "rate_limited"
    assert oracle.waits == []  # type: ignore[attr-defined]


def test_total_wait_is_bounded(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    script = {n: (429, "rate_limited", {"Retry-After": "2"}) for n in range(1, 50)}
    oracle = oracle_for(endpoint(script=script), max_wait=5.0, max_wait_total=5.0)
    with pytest.raises(Stopped, match="rate_limited"):
        oracle.ask(rows(digits, 1))
    assert oracle.waits == [2.0, 2.0]  # type: ignore[attr-defined]


def always_429(retry_after: str) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client whose endpoint refuses every request with 429 and this Retry-After."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) > 1000:  # without a bound on retries the oracle would loop forever
            raise RuntimeError("the oracle kept retrying")
        headers = {"Retry-After": retry_after}
        return httpx.Response(429, json={"error": "rate_limited"}, headers=headers)

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def test_retry_after_zero_forever_ends() -> None:
    """A 429 with Retry-After: 0 on every request: the oracle stops after a bounded number
    of retries, each counted as a short wait, instead of looping forever."""
    client, seen = always_429("0")
    waits: list[float] = []
    oracle = Oracle(URL, budget=10, client=client, sleep=waits.append)
    with pytest.raises(Stopped, match="rate_limited") as stop:
        oracle.ask(np.zeros((2, 4)))
    assert "in a row" in stop.value.detail
    assert len(seen) == 21 and len(waits) == 20
    assert all(w == pytest.approx(0.1) for w in waits)
    assert oracle.stats.waited_s == pytest.approx(2.0)


def test_retry_after_zero_counts_against_the_total_wait() -> None:
    client, seen = always_429("0")
    waits: list[float] = []
    oracle = Oracle(URL, budget=10, client=client, sleep=waits.append, max_wait_total=0.55)
    with pytest.raises(Stopped, match="waited too long"):
        oracle.ask(np.zeros((1, 4)))
    assert len(waits) == 5 and len(seen) == 6


def test_block_stops_and_is_recorded(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    mock = endpoint(script={3: (403, "blocked", {"Retry-After": "900"})})
    oracle = oracle_for(mock)
    oracle.ask(rows(digits, 5))
    oracle.ask(rows(digits, 5))
    with pytest.raises(Stopped) as stop:
        oracle.ask(rows(digits, 5))
    assert stop.value.reason == "blocked"
    assert oracle.stats.blocked_at == 15
    assert oracle.log[-1].retry_after == 900.0
    assert oracle.stats.as_dict()["rejected"] == {"blocked": 5}


def test_invalid_input_is_one_request_only(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    mock = endpoint(script={1: (422, "invalid_input", {})})
    oracle = oracle_for(mock)
    with pytest.raises(Rejected) as refused:
        oracle.ask(rows(digits, 2))
    assert refused.value.reason == "invalid_input"
    assert oracle.ask(rows(digits, 2)).shape == (2, 10)
    assert oracle.remaining == 96  # refused rows are spent


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "unauthenticated"), (403, "forbidden"), (500, "server_error")]
)
def test_fatal_statuses(
    digits: Digits, endpoint: Callable[..., MockEndpoint], status: int, reason: str
) -> None:
    oracle = oracle_for(endpoint(script={1: (status, reason, {})}))
    with pytest.raises(Stopped) as stop:
        oracle.ask(rows(digits, 1))
    assert stop.value.reason == reason


def test_unexpected_answer_and_unreachable(digits: Digits) -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=[1])))
    oracle = Oracle(URL, budget=10, client=client)
    with pytest.raises(Stopped, match="unexpected_answer"):
        oracle.ask(rows(digits, 2))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    oracle = Oracle(URL, budget=10, client=httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(Stopped, match="unreachable"):
        oracle.ask(rows(digits, 1))
    assert oracle.log[0].status == 0


def test_degrade_is_confirmed_with_a_canary(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """Soft scores, then labels: the oracle re-asks an earlier row and sees a label."""
    mock = endpoint(degrade_after=2)
    oracle = oracle_for(mock, budget=200)
    for i in range(5):
        oracle.ask(digits.x_test[4 * i : 4 * i + 4])
    assert oracle.stats.degraded_at == 9  # first row of the third request
    assert any(e.canary for e in oracle.log)


def test_confident_labels_are_not_a_degrade() -> None:
    """One-hot answers that the canary does not confirm (e.g. rounded confident rows) are fine."""

    def answer(request: httpx.Request) -> httpx.Response:
        x = np.asarray(json.loads(request.content)["x"])
        confident = x[:, 0] >= 100  # marked rows: answered one-hot, as rounding may do
        scores = np.where(confident[:, np.newaxis], np.eye(3)[0], [0.5, 0.3, 0.2])
        return httpx.Response(200, json=scores.tolist())

    client = httpx.Client(transport=httpx.MockTransport(answer))
    oracle = Oracle(URL, budget=300, client=client)
    oracle.ask(np.zeros((2, 4)))
    for _ in range(5):
        oracle.ask(np.full((4, 4), 100.0))
    assert any(e.canary for e in oracle.log)  # the streak was checked
    assert oracle.stats.degraded_at is None


def test_one_hot_rows() -> None:
    answers = np.array([[0.0, 1.0, 0.0], [0.2, 0.8, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert one_hot_rows(answers).tolist() == [True, False, False, False]


def test_a_refused_canary_keeps_the_answers(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """The canary request is blocked: the current answers still come back, the next ask stops."""
    mock = endpoint(degrade_after=2, script={5: (403, "blocked", {})})
    oracle = oracle_for(mock, budget=200)
    for i in range(4):  # the 4th request makes the one-hot streak 8 rows: canary = request 5
        assert oracle.ask(digits.x_test[4 * i : 4 * i + 4]).shape == (4, 10)
    assert oracle.log[-1].canary and oracle.stats.blocked_at == 17
    with pytest.raises(Stopped, match="blocked"):
        oracle.ask(digits.x_test[:4])


def test_progress_never_counts_rows_refused_as_rate_limited(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """What a watcher of each exchange (the progress bar) reads as spent is what the
    budget counts: a 429's rows are not spent, not even while it is being reported."""
    mock = endpoint(script={2: (429, "rate_limited", {"Retry-After": "1"})})
    seen: list[int] = []
    oracle = oracle_for(mock, budget=4, on_exchange=lambda o: seen.append(o.spent))
    oracle.ask(rows(digits, 2))
    oracle.ask(rows(digits, 2))  # refused once, then answered
    assert [2, 2, 4] == seen
