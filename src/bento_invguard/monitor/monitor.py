"""Monitor: each principal's recent queries, escalated flag -> degrade -> block."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
from cachetools import TTLCache

from ..context import QueryContext
from ..errors import Blocked
from ..policy import Policy
from ..storage import StorageFailures, is_memory, storage_uri
from .crowd import Crowd
from .distribution import DistributionReference
from .history import SIGNALS, History, top_margin
from .signal import Signal
from .store import MonitorStore, UpdateContention, open_monitor_store

T = TypeVar("T")
logger = logging.getLogger("bento_invguard")
_PROBING, _BOUNDARY, _OFF_DATA = (SIGNALS.index(s) for s in ("probing", "boundary", "off_data"))
_FLAGGED, _DEGRADED, _BLOCKED = 1, 2, 3


class Monitor:
    """Per-principal, per-model-version escalation.

    Signals over the principal's last ``window`` queries (exact repeats are
    none): the share the shared view judged probing, the share hugging the
    decision boundary beyond what benign traffic shows, the share in requests
    the reference profile refused beyond what benign traffic shows, and
    bursts against the principal's own rate; with ``monitor.distribution``, whether
    the principal's answered rows are distributed like natural data, alone and along the
    way all keys' rows together are off (:class:`Crowd`). ``on_blocks`` hears how many
    principals are blocked whenever that may have changed.
    """

    def __init__(
        self,
        policy: Policy,
        model_version: Callable[[], str] = lambda: "default",
        store: MonitorStore | None = None,
        clock: Callable[[], float] = time.time,
        on_blocks: Callable[[int], None] | None = None,
    ) -> None:
        self.policy = policy
        self.settings = policy.monitor
        self.enabled = self.settings.enabled
        self.model_version = model_version
        self.clock = clock
        self._store = store
        self._on_blocks = on_blocks
        self._blocks_until: dict[str, float] = {}  # blocks this process knows of, for the gauge
        self._reported = 0
        # the highest escalation logged per principal: one WARNING per step up
        self._levels: TTLCache[str, int] = TTLCache(
            self.settings.max_principals, self.settings.block_seconds, clock
        )
        self.in_process = store is None and is_memory(storage_uri(policy))
        self._storage_failed = StorageFailures(policy, "monitor", "monitor")
        # a request the profile refused stays refused whatever the storage does
        self._refusal_storage_failed = StorageFailures(
            policy, "monitor", "monitor (for a refused request)", fail_open=True
        )
        # A key whose own parallel queries keep its history changing is refused, not
        # served unmonitored, whatever on_storage_error says: the caller controls it.
        self._contention_failed = StorageFailures(policy, "monitor", "monitor", fail_open=False)
        self.timeout = policy.rate_limiting.timeout
        self.distribution: DistributionReference | None = None
        self.signal: Signal | None = None  # its per-row path
        self.crowd = Crowd()  # every key's answered rows in this process
        if self.settings.distribution is not None:
            self.distribution = DistributionReference.load(
                policy.resolve(self.settings.distribution)
            ).calibrated(self.settings.target_false_positive_rate)
            self.signal = self.distribution.signal()

    @property
    def store(self) -> MonitorStore:
        if self._store is None:  # opened on first use, on the serving event loop
            self._store = open_monitor_store(self.policy, self.clock)
        return self._store

    def key(self, ctx: QueryContext) -> str:
        return self.principal_key(_principal(ctx))

    def principal_key(self, principal: str) -> str:
        """State key of a principal under the current model version."""
        return f"{self.model_version()}:{principal}"

    async def check_block(self, ctx: QueryContext) -> None:
        """403 blocked while the principal is cooling down."""
        if not self.enabled:
            return
        try:
            block = await self._bounded(self.store.blocked(self.key(ctx)))
            self._forget_expired()
        except Exception as exc:
            self._storage_failed(ctx, exc)
            return
        if block is not None:
            retry = max(1, math.ceil(block["until"] - self.clock()))
            ctx.risk = 1.0
            raise ctx.reject(
                Blocked(
                    f"this key is blocked for {retry} s after probing was detected "
                    f"({block['reason']})",
                    headers={"Retry-After": str(retry)},
                ),
                "monitor",
            )

    async def assess(self, ctx: QueryContext, probing: np.ndarray, repeat: np.ndarray) -> None:
        """Add the query's new rows (not ``repeat``) with the model's scores; escalate on risk."""
        if not self.enabled or ctx.scores is None or not ctx.via_http:
            return
        scores = np.asarray(ctx.scores, dtype=np.float64)
        flags = np.zeros((len(SIGNALS), len(scores)), dtype=bool)
        flags[_PROBING] = probing
        flags[_BOUNDARY] = top_margin(scores) < self.settings.boundary_margin
        new = ~np.asarray(repeat, dtype=bool)
        stats = None
        if self.signal is not None:
            rows = _rows(ctx.input, len(scores), self.signal.features)
            stats = None if rows is None else self.signal.statistics(rows[new])
        await self._observe(ctx, flags[:, new], self._storage_failed, stats=stats)

    async def observe_refused(self, ctx: QueryContext, rows: int, probing: bool = False) -> None:
        """Count the ``rows`` of a refused request: refused by the reference profile (422,
        check ``profile``; every row, since none is answered and an attacker could
        otherwise dilute a probe in natural rows), or as ``probing`` by the shared view.
        If the risk reaches the block threshold the key is blocked from its next request
        on (this one keeps its refusal). Never raises."""
        if not self.enabled or not ctx.via_http or rows < 1:
            return
        flags = np.zeros((len(SIGNALS), rows), dtype=bool)
        flags[_PROBING if probing else _OFF_DATA] = True
        await self._observe(ctx, flags, self._refusal_storage_failed, refuse=False)

    async def _observe(
        self,
        ctx: QueryContext,
        flags: np.ndarray,
        failed: StorageFailures,
        refuse: bool = True,
        stats: np.ndarray | None = None,
    ) -> None:
        key, now, reference = self.key(ctx), self.clock(), self.signal

        def change(h: History) -> None:
            h.push(flags, now)
            if stats is not None and reference is not None:
                h.add_statistics(stats, reference.decay)

        try:
            history = await self._update(key, change, ctx)
        except UpdateContention as exc:
            self._contention_failed(ctx, exc)
            return
        except Exception as exc:
            failed(ctx, exc)
            return
        direction = None
        if stats is not None and reference is not None:
            self.crowd.add(stats)
            direction = self.crowd.direction(reference)
        ctx.risk, ctx.risk_reasons = history.risk(self.settings, reference, direction)
        if ctx.risk >= self.settings.thresholds.flag:  # the lowest threshold: else nothing to do
            await self._escalate(ctx, key, refuse)

    async def _escalate(self, ctx: QueryContext, key: str, refuse: bool) -> None:
        t, actions, risk = self.settings.thresholds, self.settings.actions, ctx.risk
        why = ", ".join(ctx.risk_reasons) or "risk"
        if actions.block and risk >= t.block:
            seconds = self.settings.block_seconds
            try:
                await self._bounded(self.store.block(key, seconds, why))
                self._blocked(key, _principal(ctx), seconds, why)
            except Exception as exc:
                (self._storage_failed if refuse else self._refusal_storage_failed)(ctx, exc)
            if not refuse:  # a refused request: the block starts with the next one
                ctx.flagged = True
                ctx.decide("monitor", "block", f"risk {risk:.2f}: {why}; from the next request")
                return
            raise ctx.reject(
                Blocked(
                    f"probing detected (risk {risk:.2f}: {why}); "
                    f"this key is blocked for {seconds} s",
                    headers={"Retry-After": str(seconds)},
                ),
                "monitor",
            )
        if actions.degrade and risk >= t.degrade:
            self._note(key, _principal(ctx), _DEGRADED, "degraded", risk, why)
            ctx.degraded = True
            ctx.decide("monitor", "degrade", f"risk {risk:.2f}: {why}")
        if actions.flag and risk >= t.flag:
            self._note(key, _principal(ctx), _FLAGGED, "flagged", risk, why)
            ctx.flagged = True
            ctx.decide("monitor", "flag", f"risk {risk:.2f}: {why}")

    # ------------------------------------------------------------------ blocks gauge

    def _note(self, key: str, who: str, level: int, action: str, risk: float, why: str) -> None:
        """One WARNING per principal and escalation step (its id, never its key; not the
        state key either, whose model version may hold a colon: ``name:version``)."""
        if self._levels.get(key, 0) >= level:
            return
        self._levels[key] = level
        logger.warning(
            "bento_invguard: principal %r %s (risk %.2f: %s)",
            who,
            action,
            risk,
            why,
        )

    def _blocked(self, key: str, who: str, seconds: int, why: str) -> None:
        self._note(
            key, who, _BLOCKED, f"blocked for {seconds} s", self.settings.thresholds.block, why
        )
        self._levels.pop(key, None)  # after the block, escalating again is news again
        self._blocks_until[key] = self.clock() + seconds
        self._report_blocks()

    def _forget_expired(self) -> None:
        now = self.clock()
        expired = [k for k, until in self._blocks_until.items() if until <= now]
        for key in expired:
            del self._blocks_until[key]
        if expired:
            self._report_blocks()

    def _report_blocks(self) -> None:
        """Tell ``on_blocks`` the change in blocked principals since it last heard."""
        delta = len(self._blocks_until) - self._reported
        self._reported += delta
        if delta and self._on_blocks is not None:
            self._on_blocks(delta)

    # ------------------------------------------------------------------ admin

    async def blocks(self) -> list[dict[str, Any]]:
        return [dict(b) for b in await self.store.blocks()]

    async def unblock(self, principal_key: str) -> bool:
        cleared = await self.store.unblock(principal_key)
        if self._blocks_until.pop(principal_key, None) is not None:
            self._report_blocks()
        return cleared

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    # ------------------------------------------------------------------ plumbing

    async def _update(
        self, key: str, change: Callable[[History], None], ctx: QueryContext
    ) -> History:
        """Apply ``change`` to the key's history and store it, without losing a concurrent one."""
        history, _ = await self._bounded(self.store.update(key, change))
        return history

    async def _bounded(self, call: Coroutine[Any, Any, T]) -> T:
        if self.in_process:
            return await call
        return await asyncio.wait_for(call, self.timeout)


def _principal(ctx: QueryContext) -> str:
    """Who sent the query: its principal's id, else the anonymous client."""
    return ctx.principal if ctx.principal else f"anonymous@{ctx.client or '-'}"


def _rows(value: Any, n: int, features: int) -> np.ndarray | None:
    """The input as ``n`` flat rows of ``features``, or None if it is not such an array."""
    if not isinstance(value, np.ndarray) or value.size != n * features:
        return None
    return value.reshape(n, features)


def run_without_io(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (in-process state) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the coroutine suspended: it needs an event loop")
