"""AuditWriter: a bounded queue and one background thread between requests and a sink.

A request only ever calls :meth:`AuditWriter.submit`, which never blocks
and takes no lock but once per batch: when the queue is full the record is
dropped and counted. The thread turns
entries into records (digest, statistics, explanations), writes them in
batches and reports a failing sink through logging (rate limited) and the
``invguard.audit.errors`` metric; it never raises. Writers are flushed and
closed at interpreter exit; :meth:`close` does it earlier.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..telemetry.metrics import GuardMetrics
from .explain import Explainer
from .record import AuditEntry
from .reporting import RateLimitedLog
from .sinks.base import AuditSink

logger = logging.getLogger("bento_invguard")

_STOP = object()
_BATCH = 256
#: After the first record of a batch the thread waits this long for more, so
#: it wakes (and takes the GIL from request threads) a few times a second at
#: most, not once per request.
_LINGER_S = 0.05
_WRITERS: weakref.WeakSet[AuditWriter] = weakref.WeakSet()


class AuditWriter:
    """Writes :class:`AuditEntry` objects to the sink ``make_sink()`` returns.

    The sink is made on the writer thread at the first batch (a sink that
    cannot be made is retried at the next one), so nothing is opened at
    import time.
    """

    def __init__(
        self,
        make_sink: Callable[[], AuditSink],
        *,
        sink_name: str,
        metrics: GuardMetrics,
        queue_size: int = 10_000,
        full: bool = False,
        explainer: Explainer | None = None,
        linger: float = _LINGER_S,
    ) -> None:
        self.make_sink = make_sink
        self.linger = linger
        self.sink_name = sink_name
        self.metrics = metrics
        self.queue_size = queue_size
        self.full = full
        self.explainer = explainer
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self._log = RateLimitedLog(logger, f"bento_invguard: audit sink {sink_name} failed")
        self._reset()
        _WRITERS.add(self)

    def _reset(self) -> None:
        # Records wait in a deque: appending takes no lock, so a request never wakes
        # the writer thread or meets it on a lock. (A queue.Queue did both on every
        # record; with the thread waiting in get(), every put set off a contended GIL
        # handover, ~10 us of the request thread's CPU.) The event wakes the thread
        # once per batch: only the record that finds it cleared sets it.
        self._pending: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._idle = threading.Condition()  # flush() waits on it
        self._busy = False  # the thread holds records it has not written yet
        self._sink: AuditSink | None = None  # a forked child makes its own
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------ request side
    def submit(self, entry: AuditEntry) -> bool:
        """Queue ``entry`` for writing; False (and counted) if it was dropped."""
        if self._closed:
            return False
        if self._thread is None:
            self._start()
        pending = self._pending
        if len(pending) >= self.queue_size:
            self.dropped += 1
            self.metrics.audit_dropped(self.sink_name)
            return False
        pending.append(entry)
        if not self._wake.is_set():  # a plain read; set() (a lock) once per batch
            self._wake.set()
        return True

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="invguard-audit", daemon=True)
                thread.start()
                self._thread = thread

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued record is written (or failed); False on timeout."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, stop the thread and close the sink."""
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        self._pending.append(_STOP)
        self._wake.set()
        thread.join(timeout)
        if not thread.is_alive() and self._sink is not None:
            try:
                self._sink.close()
            except Exception as exc:
                self._log.warning(exc)

    # ------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._closed:
                time.sleep(self.linger)  # let a batch gather
            self._wake.clear()  # a record added from here on sets it again
            if self._drain():
                return

    def _drain(self) -> bool:
        """Write what is pending, a batch at a time; True once the stop sentinel came."""
        pending = self._pending
        stopped = False
        while True:
            with self._idle:
                if not pending:
                    self._busy = False
                    self._idle.notify_all()
                    return stopped
                self._busy = True
            batch: list[Any] = []
            while pending and len(batch) < _BATCH:
                batch.append(pending.popleft())
            entries = [item for item in batch if item is not _STOP]
            stopped = stopped or len(entries) != len(batch)
            try:
                if entries:
                    self._write(entries)
            except Exception as exc:  # never let the thread die
                self._failed(len(entries), exc)

    def _write(self, entries: list[AuditEntry]) -> None:
        records = []
        for entry in entries:
            try:
                if self.explainer is not None and entry.flagged:
                    entry.explanations = self.explainer(entry.input, entry.scores)
                records.append(entry.to_record(full=self.full))
            except Exception as exc:  # one odd query must not cost the batch
                self._failed(1, exc)
        if not records:
            return
        try:
            if self._sink is None:
                self._sink = self.make_sink()
            self._sink.write(records)
        except Exception as exc:
            self._failed(len(records), exc)
            return
        self.written += len(records)

    def _failed(self, count: int, exc: BaseException) -> None:
        self.errors += count
        self.metrics.audit_error(self.sink_name, count)
        self._log.warning(exc)


@atexit.register
def close_all_writers(timeout: float = 2.0) -> None:
    """Flush and close every writer; runs at interpreter exit."""
    for writer in list(_WRITERS):
        try:
            writer.close(timeout)
        except Exception:
            logger.debug("bento_invguard: closing an audit writer failed", exc_info=True)


def _reset_after_fork() -> None:
    for writer in list(_WRITERS):
        writer._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
