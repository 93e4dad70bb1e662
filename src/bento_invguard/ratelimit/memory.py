"""limits' in-process storage, with expiry that costs next to nothing per request.

limits' async ``MemoryStorage`` starts a sweep of *every* key after nearly
every call and hands each moving-window key's bisect to a thread
(``asyncio.to_thread``). Under load that is one thread hop per principal and
window, again and again: it cost the guarded example about a fifth of its
server CPU. :class:`SweepingMemoryStorage` keeps limits' counters, moving
windows and strategies as they are and changes only *when* expired state is
dropped:

- a moving window keeps at most ``limit`` entries: when one is acquired, the
  entries past the limit (which no check can ever read again) are dropped;
- every ``sweep_seconds`` one call also drops the expired state of at most
  ``sweep_keys`` keys, inline, in a round over all keys: no thread, no task.

A principal's windows never read expired state either way (limits checks
timestamps and expiries on every read); the sweep only bounds memory.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from limits.aio.storage import MemoryStorage
from limits.aio.storage.memory import Entry

from .counted import WindowCount, WindowHit

F = TypeVar("F", bound=Callable[..., Any])


def _unwrapped(method: F) -> F:
    """The method without limits' error-wrapping layers (see the end of this module)."""
    while hasattr(method, "__wrapped__"):
        method = method.__wrapped__
    return method


_acquire_entry = _unwrapped(MemoryStorage.acquire_entry)

#: Seconds between two sweep steps, and keys examined per step.
SWEEP_SECONDS = 0.25
SWEEP_KEYS = 2048


class SweepingMemoryStorage(MemoryStorage):
    """``memory://`` for the rate limiter: limits' MemoryStorage with amortised expiry.

    >>> import asyncio
    >>> from limits import parse
    >>> from limits.aio.strategies import MovingWindowRateLimiter
    >>> limiter = MovingWindowRateLimiter(SweepingMemoryStorage())
    >>> asyncio.run(limiter.hit(parse("1/second"), "alice"))
    True
    """

    # No STORAGE_SCHEME: limits keeps "async+memory" for its own class.

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        sweep_seconds: float = SWEEP_SECONDS,
        sweep_keys: int = SWEEP_KEYS,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._sweep_seconds = sweep_seconds
        self._sweep_keys = sweep_keys
        self._clock = clock
        self._next_sweep = clock() + sweep_seconds
        self._round: Iterator[str] = iter(())

    async def _MemoryStorage__schedule_expiry(self) -> None:
        """Replaces limits' per-call sweep task (name-mangled in the base class)."""
        self._sweep_due()

    def _sweep_due(self) -> None:
        now = self._clock()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_seconds
            self.sweep(self._sweep_keys)

    # --- one step per window for the rate limiter: the hit and the counts after it ---
    #
    # limits' calls are coroutines that never await anything here, each behind an
    # asyncio.Lock that nothing else can hold while they run (there is no await
    # between reading and writing). The two methods below do what ``acquire_entry``
    # then ``get_moving_window``, or ``incr`` then ``get_expiry``, do, in one
    # synchronous call, on the same state, so limits' own calls stay interchangeable.

    def acquire_and_count(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> tuple[bool, float, int]:
        """A moving-window hit: (acquired, start of the window, entries in it after)."""
        self._sweep_due()
        events = self.events.setdefault(key, [])
        timestamp = time.time()
        acquired = False
        if amount <= limit:
            entry = events[limit - amount] if len(events) > limit - amount else None
            if not (entry and entry.atime >= timestamp - expiry):
                events[:0] = [Entry(expiry)] * amount
                acquired = True
        if len(events) > limit:
            del events[limit:]  # newest first: past ``limit`` nothing is ever read
        if not events:
            return acquired, timestamp, 0
        oldest = bisect.bisect_left(events, -(timestamp - expiry), key=_newest_first)
        return acquired, events[oldest - 1].atime, oldest

    def hit_windows(self, windows: Sequence[WindowHit], amount: int) -> list[WindowCount]:
        """Every window's hit and its counts after it (moving and fixed windows)."""
        counts = []
        for w in windows:
            if w.strategy == "moving-window":
                ok, start, used = self.acquire_and_count(w.key, w.limit, w.expiry, amount)
                counts.append(WindowCount(ok, start + w.expiry, w.limit - used))
            else:
                used, ends = self.incr_and_expiry(w.key, w.expiry, amount)
                counts.append(WindowCount(used <= w.limit, ends, max(0, w.limit - used)))
        return counts

    def incr_and_expiry(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]:
        """A fixed-window hit: (the counter after it, when the window ends)."""
        now = time.time()
        if self.expirations.get(key, 0) <= now:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            self.locks.pop(key, None)
        self._sweep_due()
        count = self.storage[key] = self.storage[key] + amount
        if count == amount:
            self.expirations[key] = time.time() + expiry
        return count, self.expirations.get(key, now)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        acquired: bool = await _acquire_entry(self, key, limit, expiry, amount)
        events = self.events.get(key)
        if events is not None and len(events) > limit:
            del events[limit:]  # newest first: past ``limit`` nothing is ever read
        return acquired

    def sweep(self, max_keys: int | None = None, *, now: float | None = None) -> int:
        """Drop expired state: of every key, or of the next ``max_keys`` in the round.

        ``now`` is wall-clock time, as limits stamps its entries. Returns the
        number of keys examined.
        """
        now = time.time() if now is None else now
        if max_keys is None:
            everything = [*self.events, *self.expirations]
            for name in everything:
                self._expire(name, now)
            return len(everything)
        examined = 0
        renewed = False
        while examined < max_keys:
            key = next(self._round, None)
            if key is None:
                if renewed:
                    break  # fewer keys than max_keys: each was examined once
                self._round = iter([*self.events, *self.expirations])
                renewed = True
                continue
            examined += 1
            self._expire(key, now)
        return examined

    def _expire(self, key: str, now: float) -> None:
        lock = self.locks.get(key)
        if lock is not None and lock.locked():
            return  # in use right now; the next round looks again
        events = self.events.get(key)
        if events is not None:
            # Entries are newest first; keep those not yet expired.
            alive = bisect.bisect_left(events, -now, key=lambda entry: -entry.expiry)
            if alive:
                del events[alive:]
            else:
                self.events.pop(key, None)
                self.locks.pop(key, None)
        expires = self.expirations.get(key)
        if expires is not None and expires <= now:
            self.storage.pop(key, None)
            self.expirations.pop(key, None)
            self.locks.pop(key, None)


def _newest_first(entry: Entry) -> float:
    return -entry.atime


# limits wraps a storage's methods to turn backend errors into StorageError, again
# in every subclass (so twice here), and the memory storage's own calls to
# ``self.get`` go through the wrappers too: about 24 wrapper calls per request of
# three windows. An in-process dict raises no backend errors; call them directly.
for _name in (
    "incr",
    "get",
    "get_expiry",
    "clear",
    "check",
    "reset",
    "acquire_entry",
    "get_moving_window",
    "acquire_sliding_window_entry",
    "get_sliding_window",
    "clear_sliding_window",
):
    setattr(SweepingMemoryStorage, _name, _unwrapped(getattr(SweepingMemoryStorage, _name)))
