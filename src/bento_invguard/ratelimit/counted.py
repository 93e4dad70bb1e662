"""A window hit that returns the window's counts: what both one-step storages speak.

The in-process storage (:meth:`.memory.SweepingMemoryStorage.hit_windows`) and
plain Redis (:class:`.redis_hits.RedisWindowHits`) hit moving and fixed
windows and return, per window, the counts the RateLimit-* headers need, so a
spend costs no second read.
"""

from __future__ import annotations

from typing import NamedTuple

#: The strategies a one-step hit handles (sliding-window-counter goes through limits).
ONE_STEP_STRATEGIES = ("moving-window", "fixed-window")


class WindowHit(NamedTuple):
    """One window to hit: limits' strategy name, storage key, limit and expiry (s)."""

    strategy: str  # "moving-window" or "fixed-window"
    key: str
    limit: int
    expiry: int


class WindowCount(NamedTuple):
    """A hit's outcome and the window's counts right after it."""

    acquired: bool
    reset_time: float  # when the window frees up (epoch seconds)
    remaining: int
