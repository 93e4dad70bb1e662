"""AuditWriter: a bounded queue and one background thread between requests and a sink.

A request only ever calls :meth:`AuditWriter.submit`, which never blocks:
when the queue is full the record is dropped and counted. The thread turns
entries into records (digest, statistics, explanations), writes them in
batches and reports a failing sink through logging (rate limited) and the
``invguard.audit.errors`` metric; it never raises. Writers are flushed and
closed at interpreter exit; :meth:`close` does it earlier.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..telemetry.inputs import input_summaries
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
        self._queue: queue.Queue[Any] = queue.Queue(self.queue_size)
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
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            self.metrics.audit_dropped(self.sink_name)
            return False
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
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                done.wait(remaining)
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
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)
        if not thread.is_alive() and self._sink is not None:
            try:
                self._sink.close()
            except Exception as exc:
                self._log.warning(exc)

    # ------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0] is not _STOP and not self._closed and self._queue.qsize() < _BATCH:
                time.sleep(self.linger)
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            entries = [item for item in batch if item is not _STOP]
            try:
                if entries:
                    self._write(entries)
            except Exception as exc:  # never let the thread die
                self._failed(len(entries), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(entries) != len(batch):
                return

    def _write(self, entries: list[AuditEntry]) -> None:
        records = []
        try:
            summaries: list[Any] = input_summaries([entry.input for entry in entries])
        except Exception:  # then each entry on its own, as below
            summaries = [...] * len(entries)
        for entry, summary in zip(entries, summaries, strict=True):
            try:
                if self.explainer is not None and entry.flagged:
                    entry.explanations = self.explainer(entry.input, entry.scores)
                records.append(entry.to_record(full=self.full, summary=summary))
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
