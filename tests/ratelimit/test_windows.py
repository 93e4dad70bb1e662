"""Which windows apply to a query, and under which keys."""

from __future__ import annotations

import pytest
from limits import parse

from bento_invguard import Policy, QueryContext
from bento_invguard.ratelimit.windows import WindowPlan, strategy_for


@pytest.mark.parametrize(
    ("limit", "configured", "expected"),
    [
        ("60/minute", "auto", "moving-window"),
        ("100/hour", "auto", "moving-window"),  # one hour is still a moving window
        ("101/2 hours", "auto", "fixed-window"),
        ("2000/day", "auto", "fixed-window"),
        ("2000/day", "moving-window", "moving-window"),
        ("5/second", "sliding-window-counter", "sliding-window-counter"),
    ],
)
def test_auto_is_moving_up_to_an_hour_and_fixed_beyond(
    limit: str, configured: str, expected: str
) -> None:
    """auto counts short windows exactly (moving) and long budgets with one counter."""
    assert expected == strategy_for(parse(limit), configured)


def _plan() -> WindowPlan:
    return WindowPlan(
        Policy(
            tiers={"public": {"rate_limit": "60/minute;2000/day"}, "free": {}},
            rate_limiting={"endpoints": {"predict": "500/second"}},
        )
    )


def test_a_principal_gets_its_tier_windows_and_the_endpoint_window() -> None:
    """Tier windows count per principal; the endpoint window counts every caller together."""
    ctx = QueryContext(endpoint="predict", principal="alice", tier_name="public")
    windows = _plan().for_query(ctx)
    assert ["60 per 1 minute", "2000 per 1 day", "500 per 1 second"] == [
        str(w.item) for w in windows
    ]
    assert ["principal", "principal", "endpoint"] == [w.scope for w in windows]
    assert ("invguard", "moving-window", "principal", "alice") == windows[0].identifiers
    assert ("invguard", "fixed-window", "principal", "alice") == windows[1].identifiers
    assert ("invguard", "moving-window", "endpoint", "predict") == windows[2].identifiers
    assert [False, True, False] == [w.refundable for w in windows]
    assert "endpoint 'predict'" == windows[2].describe()


def test_anonymous_callers_count_by_client_address() -> None:
    """Without a principal the window belongs to the client address."""
    ctx = QueryContext(endpoint="other", tier_name="public", client="10.0.0.7")
    (minute, _) = _plan().for_query(ctx)
    assert ("invguard", "moving-window", "anonymous", "10.0.0.7") == minute.identifiers
    assert "10.0.0.7" in minute.key


def test_no_limits_no_windows() -> None:
    """A tier without rate_limit on an endpoint without a limit has no window."""
    ctx = QueryContext(endpoint="other", principal="bob", tier_name="free")
    assert [] == _plan().for_query(ctx)
    assert not WindowPlan(Policy(tiers={"free": {}}))
