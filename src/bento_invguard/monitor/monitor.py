"""Monitor: scores every row a principal sends and escalates flag -> degrade -> block."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import numpy as np

from ..context import QueryContext
from ..errors import Blocked
from ..policy import Policy
from ..storage import StorageFailures
from ..validation import Profile
from .fingerprint import Fingerprinter, first_margin, row_digest, row_digests, top_margin
from .history import History
from .store import MemoryStore, MonitorStore, RedisStore, UpdateContention, open_monitor_store

T = TypeVar("T")
logger = logging.getLogger("bento_invguard")


class Monitor:
    """Per-principal, per-model-version detection of inversion and extraction probing.

    Signals, each over the principal's last ``window`` distinct queries (exact
    retries are one query): the share of queries that nearly repeat an
    earlier one (SimHash within ``max_distance`` bits), the share hugging the
    decision boundary beyond what benign traffic shows, the share the
    reference profile refused (every row of a request it refused: see
    :meth:`observe_refused`) beyond what benign traffic shows, and bursts
    against the principal's own rate. A
    near-duplicate cluster queried by several principals raises a global
    signal too.
    """

    def __init__(
        self,
        policy: Policy,
        profile: Profile | None = None,
        model_version: Callable[[], str] = lambda: "default",
        store: MonitorStore | None = None,
    ) -> None:
        self.policy = policy
        self.settings = policy.monitor
        self.enabled = self.settings.enabled
        self.profile = profile
        self.model_version = model_version
        self._store = store
        self._fingerprinter: Fingerprinter | None = None
        self.in_process = store is None and _memory(policy)
        self._storage_failed = StorageFailures(policy, "monitor", "monitor")
        # a request the profile refused stays refused whatever the storage does
        self._refusal_storage_failed = StorageFailures(
            policy, "monitor", "monitor (for a refused request)", fail_open=True
        )
        # A key whose own parallel queries keep its history changing is refused, not
        # served unmonitored, whatever on_storage_error says: the caller controls it.
        self._contention_failed = StorageFailures(policy, "monitor", "monitor", fail_open=False)
        self._pending: set[asyncio.Task[None]] = set()
        self.timeout = policy.rate_limiting.timeout

    @property
    def store(self) -> MonitorStore:
        if self._store is None:  # opened on first use, on the serving event loop
            self._store = open_monitor_store(self.policy)
        return self._store

    def key(self, ctx: QueryContext) -> str:
        who = ctx.principal if ctx.principal else f"anonymous@{ctx.client or '-'}"
        return self.principal_key(who)

    def principal_key(self, principal: str) -> str:
        """State key of a principal under the current model version."""
        return f"{self.model_version()}:{principal}"

    # ------------------------------------------------------------------ blocks

    async def check_block(self, ctx: QueryContext) -> None:
        """403 blocked while the principal is cooling down."""
        if not self.enabled:
            return
        try:
            memory = self._memory()
            key = self.key(ctx)
            store = self.store
            if memory is not None:
                block = memory.blocked_now(key)
            elif isinstance(store, RedisStore):
                block, data = await self._bounded(store.blocked_and_read(key))
                ctx.monitor_read = (key, data)
            else:
                block = await self._bounded(store.blocked(key))
        except Exception as exc:
            self._storage_failed(ctx, exc)
            return
        if block is not None:
            retry = max(1, math.ceil(block["until"] - time.time()))
            ctx.risk = 1.0
            raise ctx.reject(
                Blocked(
                    f"this key is blocked for {retry} s after probing was detected "
                    f"({block['reason']})",
                    headers={"Retry-After": str(retry)},
                ),
                "monitor",
            )

    # ------------------------------------------------------------------ assess

    async def assess(self, ctx: QueryContext) -> None:
        """Observe every row of the query with the model's scores; escalate on risk."""
        if not self.enabled or ctx.input is None or ctx.scores is None or not ctx.via_http:
            return
        rows = np.asarray(ctx.input)
        rows = rows.reshape(rows.shape[0], -1)
        scores = np.asarray(ctx.scores, dtype=np.float64)
        key = self.key(ctx)
        settings = self.settings
        # one row (most requests) of plain numbers: the same steps on Python scalars
        one = (
            rows.shape[0] == 1
            and scores.ndim == 2
            and scores.shape[0] == 1
            and _converts_quietly(rows.dtype)
        )
        try:
            memory = self._memory()
            now = time.time()
            if one:
                flat = rows.astype(np.float64, copy=False)
                sig = self.fingerprinter(rows).one(flat)
                digest = row_digest(flat)
                boundary = first_margin(scores) < settings.boundary_margin

                def observe_one(h: History) -> bool:
                    return h.observe(sig, digest, settings.max_distance, boundary, now)

                history, fresh = await self._update(memory, key, observe_one, ctx)
                distributed = 0
                if fresh and settings.distributed_min_principals != 0:  # off: no arrays to build
                    distributed = await self._distributed(
                        key, np.array([sig], dtype=np.uint64), np.array([digest], dtype=np.uint64)
                    )
            else:
                sigs = self.fingerprinter(rows)(rows)
                digests = row_digests(rows)
                margins = top_margin(scores)

                def observe_rows(h: History) -> np.ndarray:
                    return self._observe(h, sigs, digests, margins)

                history, rows_fresh = await self._update(memory, key, observe_rows, ctx)
                distributed = await self._distributed(key, sigs[rows_fresh], digests[rows_fresh])
        except UpdateContention as exc:
            self._contention_failed(ctx, exc)
            return
        except Exception as exc:
            self._storage_failed(ctx, exc)
            return
        risk, reasons = history.risk(settings)
        if distributed:
            risk = max(risk, settings.thresholds.flag)
            reasons.append(f"distributed={distributed}")
        ctx.risk, ctx.risk_reasons = risk, reasons
        if risk >= settings.thresholds.flag:  # the lowest threshold: else nothing to do
            await self._escalate(ctx, key, risk, reasons)

    def observe_refused_soon(self, ctx: QueryContext, value: Any) -> None:
        """:meth:`observe_refused` from synchronous code: at once with in-process state,
        otherwise through the event loop (awaited from a worker thread, scheduled from
        the loop's own thread). Never raises: the request is refused already."""
        if not self.enabled or not ctx.via_http or self.profile is None:
            return
        if self.in_process:
            run_without_io(self.observe_refused(ctx, value))
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a sync API's worker thread
            import anyio.from_thread

            try:
                anyio.from_thread.run(self.observe_refused, ctx, value)
            except Exception as exc:  # not an AnyIO worker thread, or the loop is gone
                self._refusal_storage_failed(ctx, exc)
            return
        task = loop.create_task(self.observe_refused(ctx, value))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def observe_refused(self, ctx: QueryContext, value: Any) -> None:
        """Count the rows of a request the reference profile refused (422, check ``profile``).

        Every row of the request enters the history marked off-data: the
        request is refused whole, so none of its rows is answered, and
        counting them all stops an attacker from diluting one probe in natural
        rows. Benign callers, whose rows the profile accepts (all 450 held-out
        digits of the example), almost never send one. Unanswered rows have
        no scores: the boundary signal counts answered rows only. If the risk
        reaches the block threshold the key is blocked from its next request
        on (this one keeps its 422).
        """
        if not self.enabled or not ctx.via_http or self.profile is None:
            return
        try:
            rows = np.asarray(value, dtype=np.float64)
            rows = rows.reshape(rows.shape[0], -1)
            if rows.shape[1] != len(self.profile.mean):
                return
            key = self.key(ctx)
            off = np.ones(len(rows), dtype=bool)
            sigs, digests = self.fingerprinter(rows)(rows), row_digests(rows)

            def observe_rows(h: History) -> np.ndarray:
                return self._observe(h, sigs, digests, None, off)

            history, _ = await self._update(self._memory(), key, observe_rows, ctx)
            risk, reasons = history.risk(self.settings)
            ctx.risk, ctx.risk_reasons = risk, reasons
            await self._escalate(ctx, key, risk, reasons, refuse=False)
        except Exception as exc:
            self._refusal_storage_failed(ctx, exc)

    def fingerprinter(self, rows: np.ndarray) -> Fingerprinter:
        if self._fingerprinter is None or self._fingerprinter._weights.shape[0] != rows.shape[1]:
            self._fingerprinter = _fingerprinter_for(self.policy, self.profile, rows.shape[1])
        return self._fingerprinter

    def _observe(
        self,
        history: History,
        sigs: np.ndarray,
        digests: np.ndarray,
        margins: np.ndarray | None,
        off_data: np.ndarray | None = None,
    ) -> np.ndarray:
        """Push each new row; ``margins`` None for unanswered rows (never on the boundary)."""
        now = time.time()
        n = len(sigs)
        limit = self.settings.max_distance
        if margins is None:
            boundary: Any = [False] * n
        else:
            boundary = margins < self.settings.boundary_margin
            boundary = boundary.tolist() if boundary.ndim == 1 else boundary
        off: Any = [False] * n if off_data is None else off_data.tolist()
        fresh = [False] * n
        # Python ints and bools, not numpy scalars, into the history
        for i, (sig, digest) in enumerate(zip(sigs.tolist(), digests.tolist(), strict=True)):
            # an exact retry is one query, not probing
            fresh[i] = history.observe(sig, digest, limit, bool(boundary[i]), now, bool(off[i]))
        return np.array(fresh, dtype=bool)

    async def _distributed(self, key: str, sigs: np.ndarray, digests: np.ndarray) -> int:
        """How many other principals sent near (not exact) duplicates of these rows."""
        if len(sigs) == 0 or self.settings.distributed_min_principals == 0:
            return 0
        who = _principal_hash(key)
        g_sigs, g_digests, g_who = await self._bounded(self.store.global_recent())
        others: set[int] = set()
        if len(g_sigs):
            # All rows against the global window at once: (rows, window) distances.
            near = np.bitwise_count(g_sigs[np.newaxis, :] ^ sigs[:, np.newaxis])
            tight = self.settings.distributed_max_distance
            match = (near <= tight) & (g_digests != digests[:, np.newaxis])
            match &= g_who != who
            if match.any():
                others.update(int(w) for w in np.unique(np.broadcast_to(g_who, match.shape)[match]))
        await self._bounded(self.store.global_push(sigs, digests, who))
        return len(others) + 1 if len(others) + 1 >= self.settings.distributed_min_principals else 0

    async def _escalate(
        self, ctx: QueryContext, key: str, risk: float, reasons: list[str], refuse: bool = True
    ) -> None:
        t, actions = self.settings.thresholds, self.settings.actions
        why = ", ".join(reasons) or "risk"
        if actions.block and risk >= t.block:
            seconds = self.settings.block_seconds
            if not refuse:  # a refused request: the block starts with the next one
                await self._bounded(self.store.block(key, seconds, why))
                ctx.flagged = True
                ctx.decide("monitor", "block", f"risk {risk:.2f}: {why}; from the next request")
                return
            try:
                await self._bounded(self.store.block(key, seconds, why))
            except Exception as exc:
                self._storage_failed(ctx, exc)
            raise ctx.reject(
                Blocked(
                    f"probing detected (risk {risk:.2f}: {why}); "
                    f"this key is blocked for {seconds} s",
                    headers={"Retry-After": str(seconds)},
                ),
                "monitor",
            )
        if actions.degrade and risk >= t.degrade:
            ctx.degraded = True
            ctx.decide("monitor", "degrade", f"risk {risk:.2f}: {why}")
        if actions.flag and risk >= t.flag:
            ctx.flagged = True
            ctx.decide("monitor", "flag", f"risk {risk:.2f}: {why}")

    # ------------------------------------------------------------------ admin

    async def blocks(self) -> list[dict[str, Any]]:
        return [dict(b) for b in await self.store.blocks()]

    async def unblock(self, principal_key: str) -> bool:
        return await self.store.unblock(principal_key)

    async def aclose(self) -> None:
        if self._pending:  # refused requests still being counted
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    # ------------------------------------------------------------------ plumbing

    def _memory(self) -> MemoryStore | None:
        """The in-process store, whose calls never wait: called without a coroutine."""
        store = self.store
        return store if self.in_process and type(store) is MemoryStore else None

    async def _update(
        self,
        memory: MemoryStore | None,
        key: str,
        change: Callable[[History], T],
        ctx: QueryContext | None = None,
    ) -> tuple[History, T]:
        """Apply ``change`` to the key's history and store it, without losing a concurrent one
        (starting from what the block check read for this query, if it read this key)."""
        if memory is not None:
            return memory.update_now(key, change)
        read: Any = ...
        if ctx is not None and ctx.monitor_read is not None:
            if ctx.monitor_read[0] == key:
                read = ctx.monitor_read[1]
            ctx.monitor_read = None  # once: a retry or a later update reads afresh
        return await self._bounded(self.store.update(key, change, read))

    async def _bounded(self, call: Coroutine[Any, Any, T]) -> T:
        if self.in_process:
            return await call
        return await asyncio.wait_for(call, self.timeout)


def run_without_io(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (in-process state) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("the coroutine suspended: it needs an event loop")


def _converts_quietly(dtype: np.dtype[Any]) -> bool:
    """Numbers that convert to float64 without a warning or an error (converted once for
    both the fingerprint and the digest, which the general path converts each)."""
    return dtype.kind in "iub" or (dtype.kind == "f" and dtype.itemsize <= 8)


def _memory(policy: Policy) -> bool:
    from ..storage import is_memory, storage_uri

    return is_memory(storage_uri(policy))


def _principal_hash(key: str) -> np.uint64:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    value: np.uint64 = np.uint64(int.from_bytes(digest, "little"))
    return value


def _fingerprinter_for(policy: Policy, profile: Profile | None, n_features: int) -> Fingerprinter:
    if profile is not None and len(profile.mean) == n_features:
        center = np.asarray(profile.mean)
        scale = np.maximum(np.asarray(profile.std), 1e-3 * (np.max(profile.std) or 1.0))
    elif policy.input.min is not None and policy.input.max is not None:
        center = np.full(n_features, (policy.input.min + policy.input.max) / 2)
        scale = np.full(n_features, (policy.input.max - policy.input.min) / 2 or 1.0)
    else:
        center, scale = np.zeros(n_features), np.ones(n_features)
    return Fingerprinter(n_features, center, scale)
