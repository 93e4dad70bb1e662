"""Where monitor state lives: this process (memory://) or Redis, shared by all workers.

Histories are read-modified-written whole; two workers updating the same
principal at the same instant may lose one update (detection gets slightly
slower, never looser). Blocks are single keys with a TTL, so a block issued
by one worker is enforced by every other at once.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import numpy as np
from cachetools import Cache, TTLCache

from ..policy import Policy
from ..storage import REDIS_DEFAULTS, is_memory, storage_uri
from .history import History

GLOBAL_WINDOW = 2048  # recent fingerprints of all principals, for distributed probing


class Block(dict[str, Any]):
    """{"principal", "until", "reason"}; a dict so it serialises as it is."""


class MonitorStore(Protocol):
    async def load(self, key: str) -> History | None: ...
    async def save(self, key: str, history: History) -> None: ...
    async def blocked(self, key: str) -> Block | None: ...
    async def block(self, key: str, seconds: int, reason: str) -> Block: ...
    async def blocks(self) -> list[Block]: ...
    async def unblock(self, key: str) -> bool: ...
    async def global_recent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    async def global_push(self, sigs: np.ndarray, digests: np.ndarray, who: np.uint64) -> None: ...
    async def aclose(self) -> None: ...


class MemoryStore:
    """In-process state, bounded by ``max_principals`` and ``state_ttl``."""

    def __init__(self, policy: Policy) -> None:
        m = policy.monitor
        self.histories: TTLCache[str, History] = TTLCache(m.max_principals, m.state_ttl)
        self._blocks: TTLCache[str, Block] = TTLCache(m.max_principals, m.block_seconds)
        self._g_sigs = np.zeros(GLOBAL_WINDOW, dtype=np.uint64)
        self._g_digests = np.zeros(GLOBAL_WINDOW, dtype=np.uint64)
        self._g_who = np.zeros(GLOBAL_WINDOW, dtype=np.uint64)
        self._g_count = 0

    async def load(self, key: str) -> History | None:
        return self.load_now(key)

    async def save(self, key: str, history: History) -> None:
        self.save_now(key, history)

    async def blocked(self, key: str) -> Block | None:
        return self.blocked_now(key)

    # The same, synchronous: the monitor's per-request path calls these directly.

    def load_now(self, key: str) -> History | None:
        return self.histories.get(key)

    def save_now(self, key: str, history: History) -> None:
        self.histories[key] = history

    def blocked_now(self, key: str) -> Block | None:
        if not Cache.__len__(self._blocks):  # no block at all, expired or not (no expiry run)
            return None
        block = self._blocks.get(key)
        if block is not None and block["until"] <= time.time():
            self._blocks.pop(key, None)
            return None
        return block

    async def block(self, key: str, seconds: int, reason: str) -> Block:
        block = Block(principal=key, until=time.time() + seconds, reason=reason)
        self._blocks[key] = block
        return block

    async def blocks(self) -> list[Block]:
        now = time.time()
        return [b for b in list(self._blocks.values()) if b["until"] > now]

    async def unblock(self, key: str) -> bool:
        self.histories.pop(key, None)  # a cleared principal starts a fresh baseline
        return self._blocks.pop(key, None) is not None

    async def global_recent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = min(self._g_count, GLOBAL_WINDOW)
        return self._g_sigs[:n], self._g_digests[:n], self._g_who[:n]

    async def global_push(self, sigs: np.ndarray, digests: np.ndarray, who: np.uint64) -> None:
        for sig, digest in zip(sigs, digests, strict=True):
            slot = self._g_count % GLOBAL_WINDOW
            self._g_sigs[slot], self._g_digests[slot], self._g_who[slot] = sig, digest, who
            self._g_count += 1

    async def aclose(self) -> None:
        return None


class RedisStore:
    """State in Redis under ``invguard:mon:``; every call bounded by the client's timeouts."""

    PREFIX = "invguard:mon:"

    def __init__(self, policy: Policy) -> None:
        import redis.asyncio

        options: dict[str, Any] = {**REDIS_DEFAULTS, **policy.storage_options}
        self.client = redis.asyncio.Redis.from_url(storage_uri(policy), **options)
        self.window = policy.monitor.window
        self.state_ttl = policy.monitor.state_ttl

    def _k(self, kind: str, key: str = "") -> str:
        return f"{self.PREFIX}{kind}:{key}"

    async def load(self, key: str) -> History | None:
        data = await self.client.get(self._k("h", key))
        return None if data is None else History.from_bytes(data, self.window)

    async def save(self, key: str, history: History) -> None:
        await self.client.set(self._k("h", key), history.to_bytes(), ex=self.state_ttl)

    async def blocked(self, key: str) -> Block | None:
        data = await self.client.get(self._k("b", key))
        return None if data is None else Block(json.loads(data))

    async def block(self, key: str, seconds: int, reason: str) -> Block:
        block = Block(principal=key, until=time.time() + seconds, reason=reason)
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

    async def global_recent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raw: list[bytes] = await self.client.lrange(self._k("g"), 0, GLOBAL_WINDOW - 1)  # type: ignore[misc]
        if not raw:
            empty = np.zeros(0, dtype=np.uint64)
            return empty, empty, empty
        table = np.frombuffer(b"".join(raw), dtype=np.uint64).reshape(-1, 3)
        return table[:, 0], table[:, 1], table[:, 2]

    async def global_push(self, sigs: np.ndarray, digests: np.ndarray, who: np.uint64) -> None:
        rows = [
            np.array([s, d, who], dtype=np.uint64).tobytes()
            for s, d in zip(sigs, digests, strict=True)
        ]
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.lpush(self._k("g"), *rows)
            pipe.ltrim(self._k("g"), 0, GLOBAL_WINDOW - 1)
            pipe.expire(self._k("g"), self.state_ttl)
            await pipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()


def open_monitor_store(policy: Policy) -> MonitorStore:
    return MemoryStore(policy) if is_memory(storage_uri(policy)) else RedisStore(policy)
