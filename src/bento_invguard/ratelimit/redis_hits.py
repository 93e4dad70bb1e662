"""Every window's hit and the counts after it, in one Redis round trip.

Through limits' calls, a spend of three windows on Redis is six commands and
six round trips: three hits, then three reads of the counts for the
RateLimit-* headers (each about 100 µs of client CPU in redis-py's asyncio
client). :class:`RedisWindowHits` sends them as one pipeline, with limits'
own Lua scripts on limits' own keys, in the order limits would run them: per
window, the hit (``acquire_moving_window`` / ``incr_expire``), then its read
(``moving_window`` / ``TTL``). The data in Redis is exactly what limits'
strategies read and write, so both paths stay interchangeable.

Only for limits' plain ``RedisStorage`` with the redis-py bridge (cluster
and sentinel storages keep limits' calls).

:func:`refund_fixed_windows` gives rows back to fixed windows on any of limits'
Redis storages, which have no ``decr``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .counted import WindowCount, WindowHit


def pipelined_hits_for(storage: Any) -> RedisWindowHits | None:
    """A :class:`RedisWindowHits` on ``storage``, or None if it is not plain redis-py Redis."""
    try:
        from limits.aio.storage import RedisStorage
        from limits.aio.storage.redis.redispy import RedispyBridge
    except ImportError:  # the redis extra is not installed
        return None
    if type(storage) is not RedisStorage or not isinstance(storage.bridge, RedispyBridge):
        return None
    return RedisWindowHits(storage.bridge)


class RedisWindowHits:
    """Hits moving and fixed windows and reads their counts in one pipeline."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        # The scripts' text, not their SHA: Redis caches them either way, and a script
        # cache emptied by a restart or SCRIPT FLUSH cannot fail part of a pipeline
        # (whose other commands would already have run, and counted, before a retry).
        self._acquire = bridge.lua_acquire_moving_window.script
        self._window = bridge.lua_moving_window.script
        self._incr = bridge.lua_incr_expire.script

    async def hit(self, windows: Sequence[WindowHit], amount: int) -> list[WindowCount]:
        bridge = self.bridge
        now = time.time()
        async with bridge.get_connection().pipeline(transaction=False) as pipe:
            for w in windows:
                key = bridge.prefixed_key(w.key)
                if w.strategy == "moving-window":
                    pipe.eval(self._acquire, 1, key, now, w.limit, w.expiry, amount)
                    pipe.eval(self._window, 1, key, now - w.expiry, w.limit)
                else:
                    pipe.eval(self._incr, 1, key, w.expiry, amount)
                    pipe.ttl(key)
            replies = await pipe.execute()
        counts = []
        for i, w in enumerate(windows):
            first, second = replies[2 * i], replies[2 * i + 1]
            if w.strategy == "moving-window":
                # as limits' get_moving_window: (oldest entry, entries) or nothing in the window
                start, used = (float(second[0]), int(second[1])) if second else (now, 0)
                counts.append(WindowCount(bool(first), start + w.expiry, w.limit - used))
            else:
                used = int(first)
                counts.append(
                    WindowCount(used <= w.limit, max(int(second), 0) + now, max(0, w.limit - used))
                )
        return counts


#: DECRBY a fixed window's counter, never below 0, and only while it exists: a window
#: that expired in between must not start the next one below zero (limits'
#: ``incr_expire`` with a negative amount would create it at ``-rows`` with a full TTL).
_REFUND = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('DECRBY', KEYS[1], ARGV[1]) < 0 then
    redis.call('SET', KEYS[1], 0, 'KEEPTTL')
  end
end
return 0
"""


async def refund_fixed_windows(storage: Any, keys: Sequence[str], amount: int) -> None:
    """Give ``amount`` rows back to each fixed window ``keys`` of a limits Redis storage."""
    bridge = storage.bridge
    connection = bridge.get_connection()
    for key in keys:
        await connection.eval(_REFUND, 1, bridge.prefixed_key(key), amount)
