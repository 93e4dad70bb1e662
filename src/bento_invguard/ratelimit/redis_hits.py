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
and sentinel storages keep limits' calls). Scripts are sent by SHA; after a
``SCRIPT FLUSH`` or a Redis restart they are loaded again once and the
pipeline retried.
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

    async def hit(self, windows: Sequence[WindowHit], amount: int) -> list[WindowCount]:
        from redis.exceptions import NoScriptError

        try:
            return await self._hit(windows, amount)
        except NoScriptError:  # scripts flushed (or a new Redis): load them and retry once
            bridge = self.bridge
            scripts = (
                bridge.lua_acquire_moving_window,
                bridge.lua_moving_window,
                bridge.lua_incr_expire,
            )
            for script in scripts:
                await bridge.get_connection().script_load(script.script)
            return await self._hit(windows, amount)

    async def _hit(self, windows: Sequence[WindowHit], amount: int) -> list[WindowCount]:
        bridge = self.bridge
        acquire, window, incr = (
            bridge.lua_acquire_moving_window.sha,
            bridge.lua_moving_window.sha,
            bridge.lua_incr_expire.sha,
        )
        now = time.time()
        async with bridge.get_connection().pipeline(transaction=False) as pipe:
            for w in windows:
                key = bridge.prefixed_key(w.key)
                if w.strategy == "moving-window":
                    pipe.evalsha(acquire, 1, key, now, w.limit, w.expiry, amount)
                    pipe.evalsha(window, 1, key, now - w.expiry, w.limit)
                else:
                    pipe.evalsha(incr, 1, key, w.expiry, amount)
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
