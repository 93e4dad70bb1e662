"""The RateLimit-* status after a spend and the message of a refusal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from limits import WindowStats, parse

from bento_invguard.ratelimit.status import LimitStatus, refusal, status_after
from bento_invguard.ratelimit.windows import Window

NOW = 1_000_000.0


def _window(limit: str, scope: str = "principal") -> Window:
    return Window(
        parse(limit), ("invguard", "moving-window", scope, "alice"), scope, "moving-window"
    )


def test_the_tightest_window_after_the_spend_is_reported() -> None:
    """Remaining is the window's room less the spend; the reset is the window's own."""
    windows = [_window("60/minute"), _window("10/second")]
    before = [WindowStats(NOW + 30, 40), WindowStats(NOW + 0.2, 5)]
    assert LimitStatus(10, 2, 1) == status_after(windows, before, 3, NOW)


def test_an_empty_window_starts_with_this_spend() -> None:
    """A window with nothing in it frees up one full period after this spend."""
    windows = [_window("60/minute")]
    assert LimitStatus(60, 59, 60) == status_after(windows, [WindowStats(NOW, 60)], 1, NOW)


@given(
    limit=st.integers(1, 1000),
    used=st.integers(0, 1000),
    rows=st.integers(1, 1000),
    reset_in=st.floats(-5, 100_000),
)
def test_headers_never_show_negative_counts(
    limit: int, used: int, rows: int, reset_in: float
) -> None:
    """Whatever the counts, RateLimit-Remaining >= 0 and RateLimit-Reset >= 1."""
    window = _window(f"{limit}/day")
    status = status_after([window], [WindowStats(NOW + reset_in, limit - used)], rows, NOW)
    headers = status.headers()
    assert int(headers["RateLimit-Remaining"]) >= 0
    assert int(headers["RateLimit-Reset"]) >= 1
    assert str(limit) == headers["RateLimit-Limit"]


def test_a_refusal_says_which_window_how_much_is_left_and_when_to_retry() -> None:
    """The message names the limit and the rows; Retry-After waits for every short window."""
    windows = [_window("5/minute"), _window("100/second", "endpoint")]
    stats = [WindowStats(NOW + 12.5, 2), WindowStats(NOW + 0.5, 1)]
    rejection = refusal(windows, stats, [0, 1], 3, NOW)
    assert 429 == rejection.status
    assert "limit 5 per 1 minute reached for this key; 2 left, this request needs 3" == (
        rejection.detail
    )
    assert {
        "Retry-After": "13",
        "RateLimit-Limit": "5",
        "RateLimit-Remaining": "2",
        "RateLimit-Reset": "13",
    } == rejection.headers


def test_a_request_larger_than_the_whole_limit_is_explained() -> None:
    """More rows than the window ever holds: the message says waiting will not help."""
    windows = [_window("3/minute", "endpoint")]
    rejection = refusal(windows, [WindowStats(NOW + 60, 3)], [0], 2, NOW, request_rows=4)
    assert "4 rows in one request exceed the whole limit of 3 per 1 minute for endpoint" in (
        rejection.detail
    )
