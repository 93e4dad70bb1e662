"""A principal's recent queries and the risk they add up to: pure state, no I/O."""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass, field

import numpy as np

from ..policy.monitor import MonitorPolicy
from .fingerprint import hamming

_HEADER = struct.Struct("<IIIddd")  # window, filled, count, first_seen, last_seen, short_rate
BURST_HALF_LIFE = 10.0  # seconds: the "short" in short-term rate
BURST_MIN_RECENT = 10.0  # a burst needs at least this many recent queries
BURST_WEIGHT = 0.4  # alone, a burst stays below the flag threshold
REASON_MIN = 0.2  # a signal at least this strong is named among the risk's reasons

_NATIVE = sys.byteorder  # how the uint64 buffers hold their values
#: Per distance limit 0..63: the bit counts above it, deleted from a buffer of counts
#: (bytes.translate) to tell whether any count is within the limit.
_ABOVE = [bytes(range(limit + 1, 256)) for limit in range(64)]


@dataclass
class History:
    """Ring buffers of one principal's last ``window`` distinct queries."""

    window: int
    filled: int = 0
    count: int = 0  # distinct queries ever seen (exact repeats excluded)
    first_seen: float = 0.0
    last_seen: float = 0.0
    short_rate: float = 0.0  # exponentially decayed queries per second
    sigs: np.ndarray = field(init=False)
    digests: np.ndarray = field(init=False)
    near: np.ndarray = field(init=False)
    boundary: np.ndarray = field(init=False)
    off_data: np.ndarray = field(init=False)  # in a request the reference profile refused

    near_count: int = field(init=False, default=0)
    boundary_count: int = field(init=False, default=0)
    off_data_count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.sigs = np.zeros(self.window, dtype=np.uint64)
        self.digests = np.zeros(self.window, dtype=np.uint64)
        self.near = np.zeros(self.window, dtype=bool)
        self.boundary = np.zeros(self.window, dtype=bool)
        self.off_data = np.zeros(self.window, dtype=bool)

    def seen(self, digest: np.uint64 | int) -> bool:
        """Whether ``digest`` is one of the recent queries' (an exact retry)."""
        if self.filled == 0:
            return False
        # a bytes search over the buffer, aligned to its 8-byte items, instead of a
        # numpy comparison: several times cheaper on a window of tens of values
        buffer = self.digests.tobytes()
        needle = int(digest).to_bytes(8, _NATIVE)
        end = 8 * self.filled
        at = buffer.find(needle, 0, end)
        while at % 8:  # -1 (absent) is no multiple of 8 either; a match across items is none
            if at < 0:
                return False
            at = buffer.find(needle, at + 1, end)
        return True

    def nearest(self, sig: np.uint64 | int) -> int:
        """Smallest Hamming distance to a recent fingerprint (64 when there is none)."""
        if self.filled == 0:
            return 64
        return int(hamming(self.sigs[: self.filled], sig).min())

    def is_near(self, sig: np.uint64 | int, limit: int) -> bool:
        """``nearest(sig) <= limit``, cheaper: no reduction in numpy."""
        filled = self.filled
        if filled == 0 or limit < 0 or limit >= 64:
            return 64 <= limit if filled == 0 else limit >= 0
        sigs = self.sigs if filled == self.window else self.sigs[:filled]
        counts = hamming(sigs, sig).tobytes()  # one byte per distance (0..64)
        return len(counts.translate(None, _ABOVE[limit])) > 0

    def observe(
        self,
        sig: np.uint64 | int,
        digest: np.uint64 | int,
        limit: int,
        boundary: bool,
        now: float,
        off_data: bool = False,
    ) -> bool:
        """Push a query unless it is an exact retry (``seen``); whether it was pushed. It
        is near when a recent fingerprint is within ``limit`` bits of ``sig``."""
        if self.seen(digest):
            return False
        self.push(sig, digest, self.is_near(sig, limit), boundary, now, off_data)
        return True

    def push(
        self,
        sig: np.uint64 | int,
        digest: np.uint64 | int,
        near: bool,
        boundary: bool,
        now: float,
        off_data: bool = False,
    ) -> None:
        window, count = self.window, self.count
        slot = count % window
        if self.filled == window:  # the slot's old query leaves the window
            self.near_count -= int(self.near.item(slot))
            self.boundary_count -= int(self.boundary.item(slot))
            self.off_data_count -= int(self.off_data.item(slot))
        self.near_count += near
        self.boundary_count += boundary
        self.off_data_count += off_data
        self.sigs[slot] = sig
        self.digests[slot] = digest
        self.near[slot] = near
        self.boundary[slot] = boundary
        self.off_data[slot] = off_data
        self.filled = min(self.filled + 1, window)
        if count == 0:
            self.first_seen = now
        decay = math.exp(-max(0.0, now - self.last_seen) / BURST_HALF_LIFE) if count else 0.0
        self.short_rate = self.short_rate * decay + 1.0 / BURST_HALF_LIFE
        self.last_seen = now
        self.count = count + 1

    def scores(self, policy: MonitorPolicy) -> dict[str, float]:
        """Each signal in 0..1: near-duplicates, boundary hugging, off-data rows, burst."""
        dup, boundary, off_data, burst = self._signals(policy)
        return {"near_duplicate": dup, "boundary": boundary, "off_data": off_data, "burst": burst}

    def _signals(self, policy: MonitorPolicy) -> tuple[float, float, float, float]:
        n = self.filled
        if n == 0:
            return 0.0, 0.0, 0.0, 0.0
        dup = self.near_count / n
        # rows of refused requests have no scores; a rate over a handful of rows means nothing
        answered = n - self.off_data_count
        rate = self.boundary_count / answered if answered >= policy.min_queries else 0.0
        benign = policy.benign_boundary_rate
        boundary = max(0.0, rate - benign) / (1.0 - benign)
        off_rate, benign_off = self.off_data_count / n, policy.benign_off_data_rate
        off_data = max(0.0, off_rate - benign_off) / (1.0 - benign_off)
        burst = 0.0
        lifetime = self.last_seen - self.first_seen
        recent = self.short_rate * BURST_HALF_LIFE  # decayed count of recent queries
        if (
            self.count >= 2 * policy.min_queries
            and lifetime > BURST_HALF_LIFE
            and recent >= BURST_MIN_RECENT
        ):
            long_rate = self.count / lifetime
            ratio = self.short_rate / max(long_rate, 1e-9)
            burst = min(1.0, max(0.0, (ratio - 1.0) / (policy.burst_factor - 1.0)))
        return dup, boundary, off_data, burst

    def risk(self, policy: MonitorPolicy) -> tuple[float, list[str]]:
        """The signals combined, with a reason named for each strong one."""
        if self.count < policy.min_queries:
            return 0.0, []
        dup, boundary, off_data, burst = self._signals(policy)
        # the same products, in the same order, as over the scores() dict with weights
        # near_duplicate, boundary, off_data 1.0 and burst BURST_WEIGHT
        keep = 1.0
        keep *= 1.0 - 1.0 * dup
        keep *= 1.0 - 1.0 * boundary
        keep *= 1.0 - 1.0 * off_data
        keep *= 1.0 - BURST_WEIGHT * burst
        reasons = []
        if dup >= REASON_MIN:
            reasons.append(f"near_duplicate={dup:.2f}")
        if boundary >= REASON_MIN:
            reasons.append(f"boundary={boundary:.2f}")
        if off_data >= REASON_MIN:
            reasons.append(f"off_data={off_data:.2f}")
        if burst >= REASON_MIN:
            reasons.append(f"burst={burst:.2f}")
        return 1.0 - keep, reasons

    # --- a compact, pickle-free encoding for shared storage (Redis) ---------------

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            self.window, self.filled, self.count, self.first_seen, self.last_seen, self.short_rate
        )
        flags = np.packbits(np.stack([self.near, self.boundary, self.off_data]), axis=1).tobytes()
        return head + self.sigs.tobytes() + self.digests.tobytes() + flags

    @classmethod
    def from_bytes(cls, data: bytes, window: int) -> History:
        w, filled, count, first, last, rate = _HEADER.unpack_from(data)
        if w != window:  # the policy's window changed: start afresh
            return cls(window)
        h = cls(window, filled, count, first, last, rate)
        off = _HEADER.size
        h.sigs = np.frombuffer(data, np.uint64, window, off).copy()
        h.digests = np.frombuffer(data, np.uint64, window, off + 8 * window).copy()
        # two flag rows before the off-data signal, three since: older state still loads
        packed = np.frombuffer(data, np.uint8, offset=off + 16 * window)
        flags = packed.reshape(len(packed) // ((window + 7) // 8), -1)
        bits = np.unpackbits(flags, axis=1)[:, :window].astype(bool)
        h.near, h.boundary = bits[0].copy(), bits[1].copy()
        if len(bits) > 2:
            h.off_data = bits[2].copy()
        h.near_count = int(h.near[:filled].sum())
        h.boundary_count = int(h.boundary[:filled].sum())
        h.off_data_count = int(h.off_data[:filled].sum())
        return h
