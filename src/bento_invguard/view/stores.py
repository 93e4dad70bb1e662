"""Where the shared view keeps its queries: this process (memory://) or Redis, for every worker.

Both stores hold the same layout (:mod:`.entries`): a ring of records and
``TABLES`` hash tables of sequence numbers. A lookup is one call (one round
trip on Redis, a Lua script reading the table rows and the records they
point at); keeping queries is another.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .entries import BUCKET, ENTRY, TABLES

RECORD_BYTES = ENTRY.itemsize - 4  # a record as sent to the store: its seq is assigned there
SEQ_LIMIT = 0xFFFFFFFF


class ViewStore(Protocol):
    async def fetch(self, rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """For table rows ``(n, TABLES)``: the current sequence number, the records those
        rows point at (each once per query), and for each the query (0..n-1) it was
        fetched for."""
        ...

    async def keep(self, records: np.ndarray, rows: np.ndarray) -> None:
        """Append ``records`` (ENTRY, seq ignored) with their table rows ``(k, TABLES)``."""
        ...

    async def aclose(self) -> None: ...


def _next_seqs(current: int, count: int) -> np.ndarray:
    """The ``count`` sequence numbers after ``current``: 1..2**32-1, round and round."""
    return ((current + np.arange(count, dtype=np.int64)) % SEQ_LIMIT + 1).astype(np.uint32)


class MemoryViewStore:
    """The view in this process's memory: ``size`` records and their hash tables."""

    def __init__(self, size: int, table_rows: int) -> None:
        self.size = size
        self.ring = np.zeros(size, dtype=ENTRY)
        self.tables = np.zeros((TABLES, table_rows, BUCKET), dtype=np.uint32)
        self.current = 0

    @property
    def nbytes(self) -> int:
        """Memory held by the records and tables."""
        return int(self.ring.nbytes + self.tables.nbytes)

    async def fetch(self, rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        return self.fetch_now(rows)

    def fetch_now(self, rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        seqs = np.sort(self.tables[np.arange(TABLES), rows].reshape(len(rows), -1), axis=1)
        first = np.ones(seqs.shape, dtype=bool)  # each record once per query
        first[:, 1:] = seqs[:, 1:] != seqs[:, :-1]
        pointed = first & (seqs != 0)
        owner = np.nonzero(pointed)[0]
        flat = seqs[pointed]
        records = self.ring[flat % self.size]
        same = records["seq"] == flat  # the slot was not overwritten since
        return self.current, records[same], owner[same]

    async def keep(self, records: np.ndarray, rows: np.ndarray) -> None:
        self.keep_now(records, rows)

    def keep_now(self, records: np.ndarray, rows: np.ndarray) -> None:
        if not len(records):
            return
        seqs = _next_seqs(self.current, len(records))
        self.current = int(seqs[-1])
        records = records.copy()
        records["seq"] = seqs
        self.ring[seqs % self.size] = records
        for t in range(TABLES):
            self.tables[t, rows[:, t], seqs % BUCKET] = seqs

    async def aclose(self) -> None:
        return None


#: KEYS: counter, ring, table 0..TABLES-1. ARGV: record size, bucket, ring size, tables,
#: table rows (uint32 LE, query-major). Returns {current, owners (uint32 LE), records}.
_FETCH = """
local E, B, size, T = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rows = ARGV[5]
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local owners, records, seen, query = {}, {}, {}, -1
for i = 0, #rows / 4 - 1 do
  local t = i % T
  if math.floor(i / T) ~= query then
    query, seen = math.floor(i / T), {}
  end
  local row = struct.unpack('<I4', rows, i * 4 + 1)
  local cells = redis.call('GETRANGE', KEYS[3 + t], row * B * 4, row * B * 4 + B * 4 - 1)
  for j = 0, #cells / 4 - 1 do
    local seq = struct.unpack('<I4', cells, j * 4 + 1)
    if seq ~= 0 and not seen[seq] then
      seen[seq] = true
      local at = (seq % size) * E
      local record = redis.call('GETRANGE', KEYS[2], at, at + E - 1)
      if #record == E and struct.unpack('<I4', record, 1) == seq then
        owners[#owners + 1] = struct.pack('<I4', math.floor(i / T))
        records[#records + 1] = record
      end
    end
  end
end
return {current, table.concat(owners), table.concat(records)}
"""

#: KEYS as above. ARGV: record size without seq, bucket, ring size, tables, ttl, records
#: (without seq), table rows (uint32 LE, record-major).
_KEEP = """
local R, B, size, T, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), tonumber(ARGV[5])
local records, rows = ARGV[6], ARGV[7]
for i = 0, #records / R - 1 do
  local seq = redis.call('INCR', KEYS[1])
  if seq > 4294967295 then
    redis.call('SET', KEYS[1], 1)
    seq = 1
  end
  local record = struct.pack('<I4', seq) .. string.sub(records, i * R + 1, i * R + R)
  redis.call('SETRANGE', KEYS[2], (seq % size) * (R + 4), record)
  for t = 0, T - 1 do
    local row = struct.unpack('<I4', rows, (i * T + t) * 4 + 1)
    redis.call('SETRANGE', KEYS[3 + t], (row * B + seq % B) * 4, struct.pack('<I4', seq))
  end
end
for k = 1, #KEYS do
  redis.call('EXPIRE', KEYS[k], ttl)
end
return 1
"""


class RedisViewStore:
    """The view in Redis under ``invguard:view:{<model version>}:``, shared by every worker.

    The keys share one hash tag, so a Redis Cluster keeps them on one node.
    """

    def __init__(self, client: Any, namespace: str, size: int, ttl: int) -> None:
        self.client = client
        self.size = size
        self.ttl = ttl
        tag = "{invguard:view:" + namespace + "}"
        self.keys = [f"{tag}:seq", f"{tag}:ring", *(f"{tag}:t{t}" for t in range(TABLES))]
        self._fetch = client.register_script(_FETCH)
        self._keep = client.register_script(_KEEP)

    async def fetch(self, rows: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        packed = np.ascontiguousarray(rows, dtype="<u4").tobytes()
        current, owners, records = await self._fetch(
            keys=self.keys, args=[ENTRY.itemsize, BUCKET, self.size, TABLES, packed]
        )
        return (
            int(current),
            np.frombuffer(records, dtype=ENTRY),
            np.frombuffer(owners, dtype="<u4").astype(np.int64),
        )

    async def keep(self, records: np.ndarray, rows: np.ndarray) -> None:
        if not len(records):
            return
        payload = _without_seq(records)
        packed = np.ascontiguousarray(rows, dtype="<u4").tobytes()
        await self._keep(
            keys=self.keys,
            args=[RECORD_BYTES, BUCKET, self.size, TABLES, self.ttl, payload, packed],
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def _without_seq(records: np.ndarray) -> bytes:
    """Records as bytes, each without its first four (the seq, assigned by the store)."""
    raw = np.ascontiguousarray(records, dtype=ENTRY).view(np.uint8).reshape(len(records), -1)
    return raw[:, 4:].tobytes()
