"""A principal's recent queries and the risk they add up to: pure state, no I/O."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from ..policy.monitor import MonitorPolicy
from .fingerprint import hamming

_HEADER = struct.Struct("<IIIddd")  # window, filled, count, first_seen, last_seen, short_rate
BURST_HALF_LIFE = 10.0  # seconds: the "short" in short-term rate
BURST_MIN_RECENT = 10.0  # a burst needs at least this many recent queries
BURST_WEIGHT = 0.4  # alone, a burst stays below the flag threshold


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

    def seen(self, digest: np.uint64) -> bool:
        return bool((self.digests[: self.filled] == digest).any())

    def nearest(self, sig: np.uint64) -> int:
        """Smallest Hamming distance to a recent fingerprint (64 when there is none)."""
        if self.filled == 0:
            return 64
        return int(hamming(self.sigs[: self.filled], sig).min())

    def push(
        self,
        sig: np.uint64,
        digest: np.uint64,
        near: bool,
        boundary: bool,
        now: float,
        off_data: bool = False,
    ) -> None:
        slot = self.count % self.window
        if self.filled == self.window:  # the slot's old query leaves the window
            self.near_count -= int(self.near[slot])
            self.boundary_count -= int(self.boundary[slot])
            self.off_data_count -= int(self.off_data[slot])
        self.near_count += near
        self.boundary_count += boundary
        self.off_data_count += off_data
        self.sigs[slot] = sig
        self.digests[slot] = digest
        self.near[slot] = near
        self.boundary[slot] = boundary
        self.off_data[slot] = off_data
        self.filled = min(self.filled + 1, self.window)
        if self.count == 0:
            self.first_seen = now
        decay = math.exp(-max(0.0, now - self.last_seen) / BURST_HALF_LIFE) if self.count else 0.0
        self.short_rate = self.short_rate * decay + 1.0 / BURST_HALF_LIFE
        self.last_seen = now
        self.count += 1

    def scores(self, policy: MonitorPolicy) -> dict[str, float]:
        """Each signal in 0..1: near-duplicates, boundary hugging, off-data rows, burst."""
        n = self.filled
        if n == 0:
            return {"near_duplicate": 0.0, "boundary": 0.0, "off_data": 0.0, "burst": 0.0}
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
        return {"near_duplicate": dup, "boundary": boundary, "off_data": off_data, "burst": burst}

    def risk(self, policy: MonitorPolicy) -> tuple[float, list[str]]:
        if self.count < policy.min_queries:
            return 0.0, []
        signals = self.scores(policy)
        weights = {"near_duplicate": 1.0, "boundary": 1.0, "off_data": 1.0, "burst": BURST_WEIGHT}
        keep = 1.0
        for name, value in signals.items():
            keep *= 1.0 - weights[name] * value
        reasons = [f"{name}={value:.2f}" for name, value in signals.items() if value >= 0.2]
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
