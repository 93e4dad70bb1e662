"""SharedView: one view of every caller's recent queries, judged per query.

A query is **probing** when the view already holds ``cluster_size`` or more
recent queries within ``radius`` of it, whoever sent them: a chain of small
steps is one attack whatever keys it is spread over. Exact repeats (same
bytes, by anyone) carry no new information: they never count towards a
cluster and are never kept twice; a repeat of a query that got a silent
answer gets that answer again. A probing query's **silent answer** is the
class already given to the oldest query of its cluster, so the model looks
constant around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..context import QueryContext
from ..reference.calibration import Thresholds
from ..reference.sketch import Sketch
from .entries import (
    CLASS,
    ENTRY,
    NO_ANSWER,
    SILENT,
    CellHasher,
    digests,
    live,
    principal_hash,
    table_rows,
)
from .stores import MemoryViewStore, ViewStore

UNITS_PER_RADIUS = 16.0  # fingerprints are kept in float16, in units of radius / 16
FLOAT16_MAX = 65000.0


@dataclass(slots=True)
class Judgement:
    """What the view found for one request's rows (handed back to :meth:`SharedView.keep`)."""

    fingerprints: np.ndarray  # (n, DIMENSIONS) in units of radius / 16
    digests: np.ndarray
    table_rows: np.ndarray
    probing: np.ndarray  # bool per row
    repeat: np.ndarray  # bool per row: an exact repeat of a kept or an earlier row
    neighbours: np.ndarray  # earlier queries within the radius, per row
    principals: int  # keys among the probing rows' neighbours, the caller included
    silent_class: np.ndarray  # per row: class to answer silently (-1: none, or see below)
    silent_row: np.ndarray  # per row: an earlier row of this request whose answer it copies

    @property
    def any_probing(self) -> bool:
        return bool(self.probing.any())

    def answers(self, predicted: list[int], silent: bool) -> np.ndarray:
        """The class each row is answered (uint16, ``SILENT`` flagged) given the model's:
        with ``silent``, probing rows and repeats of silenced queries get the class their
        cluster was answered; every other row its own."""
        out = np.array(predicted, dtype=np.uint16)
        if not silent:
            return out
        for i in range(len(out)):
            copied = int(self.silent_class[i])
            if self.silent_row[i] >= 0:
                source = int(out[self.silent_row[i]])
                if self.probing[i] or source & SILENT:
                    copied = source & CLASS
            if copied >= 0 and (self.probing[i] or self.repeat[i]):
                out[i] = copied | SILENT
        return out


class SharedView:
    """The control: ``judge`` a request's rows before the model, ``keep`` them after it."""

    def __init__(
        self,
        thresholds: Thresholds,
        *,
        size: int,
        ttl: int,
        center: np.ndarray | None = None,
        store: Callable[[], ViewStore] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``store`` opens the store on first use (on the serving event loop); default:
        this process's memory."""
        self.thresholds = thresholds
        self.size = size
        self.ttl = ttl
        self.clock = clock
        self.unit = thresholds.radius / UNITS_PER_RADIUS
        self._open_store = store or (lambda: MemoryViewStore(size, table_rows(size)))
        self._store: ViewStore | None = None
        self._center = center
        self._sketch: Sketch | None = None
        self._hasher = CellHasher(UNITS_PER_RADIUS, table_rows(size))

    @property
    def store(self) -> ViewStore:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def sketch(self, n_features: int) -> Sketch:
        if self._sketch is None or self._sketch.n_features != n_features:
            center = self._center
            if center is not None and np.size(center) != n_features:
                center = None
            self._sketch = Sketch(n_features, center)
        return self._sketch

    async def judge(self, ctx: QueryContext, rows: np.ndarray) -> Judgement:
        """Which rows of the request are probing; records the verdict on ``ctx``."""
        flat = np.asarray(rows).reshape(len(rows), -1)
        fingerprints = self.sketch(flat.shape[1])(flat) / np.float32(self.unit)
        np.clip(fingerprints, -FLOAT16_MAX, FLOAT16_MAX, out=fingerprints)
        fingerprints = fingerprints.astype(np.float16).astype(np.float32)  # as kept
        row_digests = digests(flat)
        buckets = self._hasher(fingerprints)
        current, records, owner = await self.store.fetch(buckets)
        alive = live(records, current, self.size, int(self.clock()) - self.ttl)
        records, owner = records[alive], owner[alive]
        judgement = self._verdict(fingerprints, row_digests, buckets, records, owner, current)
        probing = int(judgement.probing.sum())
        if probing:
            ctx.decide(
                "view",
                "probing",
                f"{probing} of {len(flat)} rows in a cluster of recent queries "
                f"from {judgement.principals} key(s)",
            )
        return judgement

    def _verdict(
        self,
        fingerprints: np.ndarray,
        row_digests: np.ndarray,
        buckets: np.ndarray,
        records: np.ndarray,
        owner: np.ndarray,
        current: int,
    ) -> Judgement:
        n = len(fingerprints)
        radius, need = UNITS_PER_RADIUS, self.thresholds.cluster_size
        kept = records["fingerprint"].astype(np.float32)
        distance = np.sqrt(((kept - fingerprints[owner]) ** 2).sum(axis=1))
        same = records["digest"] == row_digests[owner]
        near = (distance <= radius) & ~same
        neighbours = np.bincount(owner[near], minlength=n)
        repeat = np.bincount(owner[same], minlength=n) > 0
        near_in = np.zeros((n, n), dtype=bool)  # [j, i]: earlier row i near row j
        equal_in = np.zeros((n, n), dtype=bool)  # [j, i]: earlier row i has row j's bytes
        if n > 1:  # earlier rows of the same request count too
            gap = np.sqrt(((fingerprints[:, None, :] - fingerprints[None, :, :]) ** 2).sum(axis=2))
            equal = row_digests[:, None] == row_digests[None, :]
            earlier = np.tri(n, k=-1, dtype=bool)
            near_in, equal_in = earlier & (gap <= radius) & ~equal, earlier & equal
            neighbours = neighbours + near_in.sum(axis=1)
            repeat |= equal_in.any(axis=1)
        probing = ~repeat & (neighbours >= need)
        silent_class = np.full(n, -1, dtype=np.int64)
        # a repeat of a silenced query is answered the same way
        for at in np.flatnonzero(same & ((records["answer"] & SILENT) != 0)):
            silent_class[owner[at]] = int(records["answer"][at] & CLASS)
        # the cluster's oldest answered query gives its class to a probing row
        answered = near & ((records["answer"] & CLASS) != NO_ANSWER) & probing[owner]
        age = (np.uint32(current) - records["seq"]).astype(np.int64)
        for row in np.flatnonzero(probing):
            mine = np.flatnonzero(answered & (owner == row))
            if len(mine):
                silent_class[row] = int(records["answer"][mine[np.argmax(age[mine])]] & CLASS)
        # else an earlier row of this request: its answer, once known
        silent_row = np.full(n, -1, dtype=np.int64)
        for j in range(1, n):
            source = np.flatnonzero(equal_in[j] | (near_in[j] & probing[j]))
            if len(source) and silent_class[j] < 0:
                silent_row[j] = int(source[0])
        who = records["who"][near & probing[owner]]
        return Judgement(
            fingerprints=fingerprints,
            digests=row_digests,
            table_rows=buckets,
            probing=probing,
            repeat=repeat,
            neighbours=neighbours,
            principals=len(np.unique(who)) + 1 if probing.any() else 0,
            silent_class=silent_class,
            silent_row=silent_row,
        )

    async def keep(self, principal: str, judgement: Judgement, answers: np.ndarray | None) -> None:
        """Add the request's new rows (not repeats) with the class each was answered
        (``answers`` None: the request was refused, so nothing was answered)."""
        new = ~judgement.repeat
        count = int(new.sum())
        if not count:
            return
        records = np.zeros(count, dtype=ENTRY)
        records["time"] = int(self.clock())
        records["who"] = principal_hash(principal)
        records["answer"] = NO_ANSWER if answers is None else answers[new]
        records["digest"] = judgement.digests[new]
        records["fingerprint"] = judgement.fingerprints[new]
        await self.store.keep(records, judgement.table_rows[new])

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aclose()
            self._store = None
