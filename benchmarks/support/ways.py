"""How an attack stream uses keys, and what the guard did to it: :class:`Stream`.

A stream is the attacker's query function: ``stream(rows) -> answers``
(``(n, classes)``). It splits the attack's rows into requests and sends them
through an :class:`~support.service.Oracle`, in one of these :class:`Way` s:

- ``one-key``: every request with one key; a refusal (403, 429) or an invalid
  input (422) ends the attack;
- ``rotate-N``: a fresh key (never reused) every ``N`` rows; a refused key is
  replaced and the request re-sent; a 422 ends the attack;
- ``adaptive``: one key, replaced (and the request re-sent) when it is refused;
  a 422 reads as "no change" (the attacker's ``fallback`` answer, else the
  previous answer); every probe row is hidden next to one natural held-out row
  in the same request, interleaved.

Everything the guard did is counted in a :class:`Ledger`: rows sent, rows
refused by reason, rows answered differently from the unguarded model
(silenced or degraded), keys used and blocked, the first row detected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .attacks import Refused, Rejected
from .service import KeyRing, LinearSoftmax, Oracle, bare_answer

Watch = Callable[[np.ndarray, np.ndarray], None]


class BudgetSpent(Refused):
    """The stream's row budget is used up."""

    def __init__(self) -> None:
        super().__init__("budget")


@dataclass(frozen=True)
class Way:
    """How keys are used: ``rotate`` rows per key (None: until refused), adaptive or not."""

    name: str
    rotate: int | None = None
    adaptive: bool = False


WAYS = {
    w.name: w
    for w in (
        Way("one-key"),
        Way("rotate-1", rotate=1),
        Way("rotate-4", rotate=4),
        Way("rotate-8", rotate=8),
        Way("rotate-16", rotate=16),
        Way("adaptive", adaptive=True),
    )
}


@dataclass
class Ledger:
    """What the guard did to one stream."""

    probe_rows: int = 0  # attack rows answered or refused (the budget counts these)
    rows_sent: int = 0  # every row sent, cover rows and re-sends included
    refused: Counter[str] = field(default_factory=Counter)  # rows, by reason
    altered: int = 0  # rows answered 200 but unlike the unguarded model (silenced/degraded)
    keys: set[str] = field(default_factory=set)
    blocked_keys: set[str] = field(default_factory=set)
    first_detection: int | None = None  # rows_sent at the first refusal or altered row
    stopped: str = "done"

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly figures."""
        return {
            "probe_rows": self.probe_rows,
            "rows_sent": self.rows_sent,
            "refused": dict(self.refused),
            "refused_rows": sum(self.refused.values()),
            "altered_rows": self.altered,
            "keys_used": len(self.keys),
            "keys_blocked": len(self.blocked_keys),
            "first_detection_row": self.first_detection,
            "stopped": self.stopped,
        }


class Stream:
    """The attacker's ``ask(rows) -> answers`` for one stream; see the module docstring."""

    def __init__(
        self,
        oracle: Oracle,
        ring: KeyRing,
        *,
        tier: str,
        way: Way,
        budget: int,
        model: LinearSoftmax,
        cover: np.ndarray,
        fallback: np.ndarray | None = None,
        watch: Watch | None = None,
        seed: int = 0,
    ) -> None:
        self.oracle, self.ring, self.tier, self.way = oracle, ring, tier, way
        self.budget, self.model, self.cover = budget, model, cover
        self.fallback, self.watch = fallback, watch
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger()
        self._key = ""
        self._key_rows = 0
        self._previous: np.ndarray | None = None
        self._max_rows = 128 if way.adaptive else 256

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        parts = []
        i = 0
        while i < len(rows):
            left = self.budget - self.ledger.probe_rows
            if left <= 0:
                raise BudgetSpent
            n = min(len(rows) - i, self._max_rows, left)
            if self.way.rotate is not None:
                if self._key_rows >= self.way.rotate:
                    self._key = ""
                n = min(n, self.way.rotate - (self._key_rows if self._key else 0))
            parts.append(self._send(rows[i : i + n]))
            i += n
        answers = np.concatenate(parts)
        if self.watch is not None:
            self.watch(rows, answers)
        return answers

    def _current_key(self) -> str:
        if not self._key:
            try:
                self._key = self.ring.take(self.tier)
            except RuntimeError:
                self.ledger.stopped = "out_of_keys"
                raise Refused("out_of_keys") from None
            self._key_rows = 0
            self.ledger.keys.add(self._key)
        return self._key

    def _send(self, probes: np.ndarray) -> np.ndarray:
        body, where = self._with_cover(probes)
        while True:
            key = self._current_key()
            reply = self.oracle.ask(key, body)
            self.ledger.rows_sent += len(body)
            self._key_rows += len(probes)
            if reply.status == 200 and reply.answer is not None:
                self._count_altered(body, reply.answer)
                self.ledger.probe_rows += len(probes)
                answers: np.ndarray = reply.answer[where]
                self._previous = answers[-1]
                return answers
            self._detected(len(body), reply.reason)
            if reply.reason == "blocked":
                self.ledger.blocked_keys.add(key)
            if reply.status in (403, 429):
                if self.way.rotate is None and not self.way.adaptive:
                    self.ledger.stopped = reply.reason
                    raise Refused(reply.reason)
                self._key = ""  # a fresh key, and the same request again
                if self.ledger.probe_rows + self.ledger.refused.total() >= 4 * self.budget:
                    raise BudgetSpent
                continue
            self.ledger.probe_rows += len(probes)
            if not self.way.adaptive:
                self.ledger.stopped = reply.reason
                raise Rejected(reply.reason)
            return self._no_change(len(probes))

    def _with_cover(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.way.adaptive:
            return probes, np.arange(len(probes))
        natural = self.cover[self.rng.integers(0, len(self.cover), size=len(probes))]
        body = np.empty((2 * len(probes), probes.shape[1]))
        body[0::2], body[1::2] = natural, probes
        return body, np.arange(1, len(body), 2)

    def _no_change(self, n: int) -> np.ndarray:
        row = self.fallback if self.fallback is not None else self._previous
        if row is None:
            classes = self.model.coef.shape[0]
            row = np.full(classes, 1.0 / classes)
        return np.tile(row, (n, 1))

    def _count_altered(self, body: np.ndarray, answer: np.ndarray) -> None:
        expected = bare_answer(self.model, body, self.tier)
        same = np.isclose(answer, expected, rtol=1e-6, atol=1e-9).all(axis=1)
        altered = int((~same).sum())
        if altered:
            self.ledger.altered += altered
            if self.ledger.first_detection is None:
                first = int(np.flatnonzero(~same)[0])
                self.ledger.first_detection = self.ledger.rows_sent - len(body) + first + 1

    def _detected(self, rows: int, reason: str) -> None:
        self.ledger.refused[reason] += rows
        if self.ledger.first_detection is None and not reason.startswith("invalid_input"):
            self.ledger.first_detection = self.ledger.rows_sent - rows + 1
