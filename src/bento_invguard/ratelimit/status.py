"""What a spend tells the client: the RateLimit-* headers, or why it was refused."""

from __future__ import annotations

import math
from dataclasses import dataclass

from limits import WindowStats

from ..errors import RateLimited
from .windows import Window


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """The most constraining window after a spend: what the RateLimit-* headers say.

    >>> LimitStatus(limit=60, remaining=57, reset_after=42).headers()["RateLimit-Remaining"]
    '57'
    """

    limit: int
    remaining: int
    reset_after: int  # seconds until the window frees up

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(self.reset_after),
        }


def seconds_until(reset_time: float, now: float) -> int:
    return max(1, math.ceil(reset_time - now))


def status_after(
    windows: list[Window], before: list[WindowStats], rows: int, now: float
) -> LimitStatus:
    """The tightest window once ``rows`` are spent, from its counts read just before.

    A window that was empty starts with this spend, so it frees up one full
    period from now. Other workers' spends in between are not seen: the
    headers are advice, the counting in the storage is what is exact.
    """
    after = [st.remaining - rows for st in before]
    tightest = min(range(len(windows)), key=after.__getitem__)
    item = windows[tightest].item
    reset = before[tightest].reset_time
    if before[tightest].remaining >= item.amount:
        reset = now + item.get_expiry()
    return LimitStatus(item.amount, max(0, after[tightest]), seconds_until(reset, now))


def refusal(
    windows: list[Window],
    stats: list[WindowStats],
    short: list[int],
    rows: int,
    now: float,
    request_rows: int | None = None,
) -> RateLimited:
    """The 429 for a spend of ``rows`` that the windows ``short`` have no room for
    (``request_rows``: the whole request's rows, if more than this spend)."""
    first = short[0]
    window = windows[first]
    left = max(0, stats[first].remaining)
    retry_after = max(seconds_until(stats[s].reset_time, now) for s in short)
    whole = max(rows, request_rows or 0)
    if whole > window.item.amount:
        detail = (
            f"{whole} rows in one request exceed the whole limit of {window.item} "
            f"for {window.describe()}"
        )
    else:
        detail = (
            f"limit {window.item} reached for {window.describe()}; "
            f"{left} left, this request needs {rows}"
        )
    status = LimitStatus(window.item.amount, left, retry_after)
    return RateLimited(detail, headers={"Retry-After": str(retry_after), **status.headers()})
