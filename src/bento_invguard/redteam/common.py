"""What every attack needs: the input box, what it produced, why it stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .exchange import Rejected
from .scoring import SoftmaxRegression


@dataclass(frozen=True)
class InputSpace:
    """What the attacker knows about valid inputs, class labels never included.

    ``start`` is a class-neutral starting point (the mean of the attacker's
    public rows, or the middle of the range); ``lower``/``upper`` the
    per-feature box queries stay in; ``spread`` a per-feature scale for
    random probes.
    """

    start: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    spread: np.ndarray

    @classmethod
    def from_range(cls, features: int, low: float, high: float) -> InputSpace:
        """Without public data: the middle of ``[low, high]``, a quarter of it as spread."""
        lower = np.full(features, float(low))
        upper = np.full(features, float(high))
        return cls((lower + upper) / 2, lower, upper, (upper - lower) / 4)

    @classmethod
    def from_rows(cls, x: np.ndarray, low: float, high: float) -> InputSpace:
        """From public rows ``x``: their mean, per-feature min and max (within the range), std."""
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        lower = np.clip(flat.min(axis=0), low, high)
        upper = np.clip(flat.max(axis=0), low, high)
        start = np.clip(flat.mean(axis=0), lower, upper)
        return cls(start, lower, upper, flat.std(axis=0))

    @property
    def features(self) -> int:
        return int(self.start.size)

    @property
    def free(self) -> np.ndarray:
        """Features the box lets vary (constant ones are never probed)."""
        return np.asarray(self.upper > self.lower)

    def clip(self, rows: np.ndarray) -> np.ndarray:
        clipped: np.ndarray = np.clip(rows, self.lower, self.upper)
        return clipped


@dataclass
class AttackResult:
    """An attack's output. ``stopped`` is ``done``, ``budget`` or the oracle's stop reason."""

    attack: str
    targets: list[int] = field(default_factory=list)
    reconstructions: np.ndarray | None = None  # one row per target
    copy: SoftmaxRegression | None = None
    stopped: str = "done"
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


class Asker(Protocol):
    """Anything that answers ``ask(rows) -> (n, classes)`` (an oracle)."""

    def ask(self, rows: np.ndarray) -> np.ndarray: ...


def ask_or_skip(oracle: Asker, rows: np.ndarray, result: AttackResult) -> np.ndarray | None:
    """``oracle.ask(rows)``; None when this one request is refused (noted), Stopped propagates."""
    try:
        return oracle.ask(rows)
    except Rejected as refusal:
        result.note(f"some requests were refused: {refusal.reason}")
        return None
