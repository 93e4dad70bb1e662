"""A principal's recent queries and the risk they add up to: pure state, no I/O.

Each new query (an exact repeat is none) enters a ring of ``window`` flags:
whether the shared view judged it probing, whether it hugged the decision
boundary, whether it was in a request the reference profile refused. With a
distribution reference, its answered rows also enter a decayed running sum of
their statistics (see :mod:`.distribution`): whether the key's traffic is
distributed like natural data.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

from ..policy.monitor import MonitorPolicy
from .signal import Signal, decayed_sum

_HEADER = struct.Struct("<IIIddd")  # window, filled, count, first_seen, last_seen, short_rate
_RUNNING = struct.Struct("<I")  # rows in the running sum
BURST_HALF_LIFE = 10.0  # seconds: the "short" in short-term rate
BURST_MIN_RECENT = 10.0  # a burst needs at least this many recent queries
BURST_WEIGHT = 0.4  # alone, a burst stays below the flag threshold
REASON_MIN = 0.2  # a signal at least this strong is named among the risk's reasons
SIGNALS = ("probing", "boundary", "off_data")


def top_margin(scores: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 score per row (the distance to the decision boundary)."""
    if scores.shape[1] < 2:
        return np.full(scores.shape[0], np.inf)
    part = np.partition(scores, -2, axis=1)
    margin: np.ndarray = part[:, -1] - part[:, -2]
    return margin


@dataclass
class History:
    """Flags of one principal's last ``window`` queries, and its query rate."""

    window: int
    filled: int = 0
    count: int = 0  # queries ever seen (exact repeats excluded)
    first_seen: float = 0.0
    last_seen: float = 0.0
    short_rate: float = 0.0  # exponentially decayed queries per second
    flags: np.ndarray = field(init=False)  # (len(SIGNALS), window) bool
    #: Decayed running sum of answered rows' statistics, and the rows in it.
    running: np.ndarray = field(default_factory=lambda: np.zeros(0))
    running_rows: int = 0

    def __post_init__(self) -> None:
        self.flags = np.zeros((len(SIGNALS), self.window), dtype=bool)

    def add_statistics(self, stats: np.ndarray, decay: float) -> None:
        """Add rows' statistics (n, size), oldest first, to the decayed running sum."""
        if len(stats) == 0:
            return
        if self.running.shape != stats.shape[1:]:
            self.running_rows = 0
        self.running = decayed_sum(self.running, stats, decay)
        self.running_rows += len(stats)

    def push(self, flags: np.ndarray, now: float) -> None:
        """Add queries, one column of ``flags`` (len(SIGNALS), k) each, oldest first."""
        for column in np.asarray(flags, dtype=bool).T:
            self.flags[:, self.count % self.window] = column
            self.filled = min(self.filled + 1, self.window)
            if self.count == 0:
                self.first_seen = now
            elapsed = max(0.0, now - self.last_seen)
            decay = math.exp(-elapsed / BURST_HALF_LIFE) if self.count else 0.0
            self.short_rate = self.short_rate * decay + 1.0 / BURST_HALF_LIFE
            self.last_seen = now
            self.count += 1

    def scores(
        self,
        policy: MonitorPolicy,
        reference: Signal | None = None,
        direction: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Each signal in 0..1: probing, boundary hugging, off-data rows, burst, and with
        a ``reference`` the distribution of the key's rows (also along the crowd's
        ``direction`` while all keys' traffic is off)."""
        n = self.filled
        extra = {}
        if reference is not None:
            extra = {"distribution": self._distribution(reference, direction)}
        if n == 0:
            return dict.fromkeys((*SIGNALS, "burst"), 0.0) | extra
        probing, boundary, off_data = (int(c) for c in self.flags[:, :n].sum(axis=1))
        # rows of refused requests have no scores; a rate over a handful of rows means nothing
        answered = n - off_data
        rate = boundary / answered if answered >= policy.min_queries else 0.0
        return {
            "probing": probing / n,
            "boundary": _beyond(rate, policy.benign_boundary_rate),
            "off_data": _beyond(off_data / n, policy.benign_off_data_rate),
            "burst": self._burst(policy),
        } | extra

    def _distribution(self, reference: Signal, direction: np.ndarray | None) -> float:
        if self.running.shape != (reference.size,):
            return 0.0
        return reference.score(self.running, self.running_rows, direction)

    def _burst(self, policy: MonitorPolicy) -> float:
        lifetime = self.last_seen - self.first_seen
        recent = self.short_rate * BURST_HALF_LIFE  # decayed count of recent queries
        if (
            self.count < 2 * policy.min_queries
            or lifetime <= BURST_HALF_LIFE
            or recent < BURST_MIN_RECENT
        ):
            return 0.0
        ratio = self.short_rate / max(self.count / lifetime, 1e-9)
        return min(1.0, max(0.0, (ratio - 1.0) / (policy.burst_factor - 1.0)))

    def risk(
        self,
        policy: MonitorPolicy,
        reference: Signal | None = None,
        direction: np.ndarray | None = None,
    ) -> tuple[float, list[str]]:
        """The signals combined (burst weighs less), with a reason named for each strong one."""
        if self.count < policy.min_queries:
            return 0.0, []
        scores = self.scores(policy, reference, direction)
        keep = 1.0
        for name, value in scores.items():
            keep *= 1.0 - (BURST_WEIGHT if name == "burst" else 1.0) * value
        reasons = [f"{name}={value:.2f}" for name, value in scores.items() if value >= REASON_MIN]
        return 1.0 - keep, reasons

    # --- a compact, pickle-free encoding for shared storage (Redis) ---------------

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            self.window, self.filled, self.count, self.first_seen, self.last_seen, self.short_rate
        )
        running = _RUNNING.pack(self.running_rows)
        return (
            head
            + np.packbits(self.flags, axis=1).tobytes()
            + running
            + self.running.astype("<f8").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes, window: int) -> History:
        w, filled, count, first, last, rate = _HEADER.unpack_from(data)
        flags_end = _HEADER.size + len(SIGNALS) * ((window + 7) // 8)
        rest = len(data) - flags_end - _RUNNING.size
        if w != window or rest < 0 or rest % 8:  # another window or layout: start afresh
            return cls(window)
        h = cls(window, filled, count, first, last, rate)
        packed = np.frombuffer(data, np.uint8, flags_end - _HEADER.size, _HEADER.size)
        h.flags = np.unpackbits(packed.reshape(len(SIGNALS), -1), axis=1)[:, :window].astype(bool)
        (h.running_rows,) = _RUNNING.unpack_from(data, flags_end)
        h.running = np.frombuffer(data, "<f8", offset=flags_end + _RUNNING.size).astype(np.float64)
        return h


def _beyond(rate: float, benign: float) -> float:
    """How far ``rate`` goes past what benign traffic shows, in 0..1."""
    return max(0.0, rate - benign) / (1.0 - benign)
