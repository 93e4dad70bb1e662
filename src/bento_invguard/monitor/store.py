"""Where monitor state lives: this process (memory://) or Redis, shared by all workers.

A history changes through :meth:`update`: read, change, write back only if
nobody wrote it in between, else read again and redo the change. In process
the read and the write happen with no await between them; on Redis the
write is a compare-and-set on the SHA-1 of what was read. Without that, a
key's parallel queries (over workers, or in flight in one) each read the
same history and the last write won: 60 concurrent queries counted as one,
so sending in parallel would have slowed detection down by the number in
flight. Blocks are single keys with a TTL, so a block issued by one worker
is enforced by every other at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from cachetools import TTLCache

from ..policy import Policy
from ..storage import REDIS_DEFAULTS, StorageContention, is_memory, storage_uri
from .history import History

#: Tries of a history update that meets concurrent writes, before it fails (as storage does).
UPDATE_ATTEMPTS = 16
T = TypeVar("T")


class UpdateContention(StorageContention):
    """A history kept changing under an update: the key's queries run too much in parallel."""


class Block(dict[str, Any]):
    """{"principal", "until", "reason"}; a dict so it serialises as it is."""


class MonitorStore(Protocol):
    async def load(self, key: str) -> History | None: ...
    async def save(self, key: str, history: History) -> None: ...
    async def update(self, key: str, change: Callable[[History], T]) -> tuple[History, T]: ...
    async def blocked(self, key: str) -> Block | None: ...
    async def block(self, key: str, seconds: int, reason: str) -> Block: ...
    async def blocks(self) -> list[Block]: ...
    async def unblock(self, key: str) -> bool: ...
    async def aclose(self) -> None: ...


class MemoryStore:
    """In-process state, bounded by ``max_principals`` and ``state_ttl``."""

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.time) -> None:
        m = policy.monitor
        self.clock = clock
        self._window = m.window
        self.histories: TTLCache[str, History] = TTLCache(m.max_principals, m.state_ttl, clock)
        self._blocks: TTLCache[str, Block] = TTLCache(m.max_principals, m.block_seconds, clock)

    async def load(self, key: str) -> History | None:
        return self.histories.get(key)

    async def save(self, key: str, history: History) -> None:
        self.histories[key] = history

    async def update(self, key: str, change: Callable[[History], T]) -> tuple[History, T]:
        history = self.histories.get(key) or History(self._window)
        result = change(history)
        self.histories[key] = history
        return history, result

    async def blocked(self, key: str) -> Block | None:
        block = self._blocks.get(key)
        return block if block is not None and block["until"] > self.clock() else None

    async def block(self, key: str, seconds: int, reason: str) -> Block:
        block = Block(principal=key, until=self.clock() + seconds, reason=reason)
        self._blocks[key] = block
        return block

    async def blocks(self) -> list[Block]:
        now = self.clock()
        return [b for b in list(self._blocks.values()) if b["until"] > now]

    async def unblock(self, key: str) -> bool:
        self.histories.pop(key, None)  # a cleared principal starts a fresh baseline
        return self._blocks.pop(key, None) is not None

    async def aclose(self) -> None:
        return None


#: Writes ARGV[2] to KEYS[1] (expiring in ARGV[3] s) only if the key still holds what
#: was read: ARGV[1] is the SHA-1 of that value ("" if there was none). 1 if written.
_SET_IF_UNCHANGED = """
local current = redis.call('GET', KEYS[1])
local seen = current and redis.sha1hex(current) or ''
if seen ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class RedisStore:
    """State in Redis under ``invguard:mon:``; every call bounded by the client's timeouts."""

    PREFIX = "invguard:mon:"

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.time) -> None:
        import redis.asyncio

        self.clock = clock
        options: dict[str, Any] = {**REDIS_DEFAULTS, **policy.storage_options}
        self.client = redis.asyncio.Redis.from_url(storage_uri(policy), **options)
        self.window = policy.monitor.window
        self.state_ttl = policy.monitor.state_ttl
        self._set_if_unchanged = self.client.register_script(_SET_IF_UNCHANGED)

    def _k(self, kind: str, key: str = "") -> str:
        return f"{self.PREFIX}{kind}:{key}"

    async def load(self, key: str) -> History | None:
        data = await self.client.get(self._k("h", key))
        return None if data is None else History.from_bytes(data, self.window)

    async def save(self, key: str, history: History) -> None:
        await self.client.set(self._k("h", key), history.to_bytes(), ex=self.state_ttl)

    async def update(self, key: str, change: Callable[[History], T]) -> tuple[History, T]:
        """Read, change and compare-and-set the history; redone if another query wrote first."""
        name = self._k("h", key)
        for attempt in range(UPDATE_ATTEMPTS):
            data: bytes | None = await self.client.get(name)
            history = (
                History(self.window) if data is None else History.from_bytes(data, self.window)
            )
            result = change(history)
            seen = "" if data is None else hashlib.sha1(data, usedforsecurity=False).hexdigest()
            if await self._set_if_unchanged(
                keys=[name], args=[seen, history.to_bytes(), self.state_ttl]
            ):
                return history, result
            # Another query of this key wrote first: back off a little (jittered) and redo.
            await asyncio.sleep(random.random() * 0.001 * 2 ** min(attempt, 5))
        raise UpdateContention(f"the history of {key!r} changed under {UPDATE_ATTEMPTS} updates")

    async def blocked(self, key: str) -> Block | None:
        data = await self.client.get(self._k("b", key))
        return None if data is None else Block(json.loads(data))

    async def block(self, key: str, seconds: int, reason: str) -> Block:
        block = Block(principal=key, until=self.clock() + seconds, reason=reason)
        await self.client.set(self._k("b", key), json.dumps(block), ex=seconds)
        return block

    async def blocks(self) -> list[Block]:
        found = []
        async for name in self.client.scan_iter(match=self._k("b", "*"), count=500):
            data = await self.client.get(name)
            if data is not None:
                found.append(Block(json.loads(data)))
        return found

    async def unblock(self, key: str) -> bool:
        removed = await self.client.delete(self._k("b", key))
        await self.client.delete(self._k("h", key))  # a cleared principal starts afresh
        return bool(removed)

    async def aclose(self) -> None:
        await self.client.aclose()


def open_monitor_store(policy: Policy, clock: Callable[[], float] = time.time) -> MonitorStore:
    if is_memory(storage_uri(policy)):
        return MemoryStore(policy, clock)
    return RedisStore(policy, clock)
