"""AuditWriter: the request side never waits; a full queue drops and counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from bento_invguard import QueryContext
from bento_invguard.audit import AuditEntry, AuditWriter
from bento_invguard.telemetry import GuardMetrics
from bento_invguard.telemetry.outcome import Outcome

from ..telemetry.helpers import make_otel


class GatedSink:
    """A real sink that holds every write until ``gate`` is set."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.records: list[dict[str, Any]] = []
        self.closed = False

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        self.gate.wait(10.0)
        self.records.extend(records)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def entry(principal: str = "p") -> AuditEntry:
    ctx = QueryContext(endpoint="predict", principal=principal, tier_name="public", status=200)
    return AuditEntry.of(ctx, Outcome.of(ctx, with_digest=False), None)


def test_full_queue_drops_without_blocking() -> None:
    """With the sink stuck, submits beyond the queue return at once, dropped and counted."""
    otel = make_otel()
    sink = GatedSink()
    writer = AuditWriter(
        lambda: sink, sink_name="gated", metrics=GuardMetrics(otel.meter_provider), queue_size=2
    )
    started = time.perf_counter()
    accepted = [writer.submit(entry(f"p{i}")) for i in range(20)]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    assert accepted.count(False) == writer.dropped
    assert writer.dropped >= 20 - 3  # two queued, at most one taken by the writer thread
    (point,) = otel.points("invguard.audit.dropped")
    assert writer.dropped == point.value
    sink.gate.set()
    assert writer.flush(10.0)
    assert accepted.count(True) == len(sink.records) == writer.written
    writer.close()


def test_close_writes_what_is_queued_and_closes_the_sink() -> None:
    """close() drains the queue, stops the thread and closes the sink; later submits refuse."""
    sink = GatedSink()
    sink.gate.set()
    writer = AuditWriter(lambda: sink, sink_name="gated", metrics=GuardMetrics(), queue_size=100)
    for i in range(10):
        writer.submit(entry(f"p{i}"))
    writer.close(10.0)
    assert [f"p{i}" for i in range(10)] == [r["principal"] for r in sink.records]
    assert sink.closed
    assert not writer.submit(entry())


def test_a_sink_that_cannot_be_made_is_retried() -> None:
    """make_sink failing counts an error; the next batch tries again and succeeds."""
    sink = GatedSink()
    sink.gate.set()
    attempts: list[int] = []

    def make_sink() -> GatedSink:
        attempts.append(1)
        if len(attempts) == 1:
            raise PermissionError("not yet")
        return sink

    writer = AuditWriter(make_sink, sink_name="gated", metrics=GuardMetrics(), queue_size=100)
    writer.submit(entry("first"))
    assert writer.flush(10.0)
    writer.submit(entry("second"))
    assert writer.flush(10.0)
    assert (1, 1) == (writer.errors, writer.written)
    assert ["second"] == [r["principal"] for r in sink.records]
    writer.close()


class Unlistable:
    """An input whose raw form cannot be taken (its tolist raises)."""

    def tolist(self) -> list[float]:
        raise RuntimeError("no raw form")


def test_one_bad_entry_does_not_cost_the_batch() -> None:
    """A record that cannot be built is counted as an error; its batch-mates are written."""
    sink = GatedSink()
    sink.gate.set()
    writer = AuditWriter(
        lambda: sink, sink_name="gated", metrics=GuardMetrics(), queue_size=100, full=True
    )
    bad = entry("bad")
    bad.input = Unlistable()
    writer.submit(bad)
    writer.submit(entry("good"))
    assert writer.flush(10.0)
    assert (1, 1) == (writer.errors, writer.written)
    assert ["good"] == [r["principal"] for r in sink.records]
    writer.close()


def test_concurrent_submits_are_each_written_once_in_order() -> None:
    """Four threads submit while the writer drains batches: every record once, per-thread order."""
    sink = GatedSink()
    sink.gate.set()
    writer = AuditWriter(
        lambda: sink, sink_name="gated", metrics=GuardMetrics(), queue_size=100_000, linger=0.001
    )

    def submit_many(t: int) -> None:
        for i in range(2000):
            assert writer.submit(entry(f"t{t}-{i}"))

    threads = [threading.Thread(target=submit_many, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.flush(30.0)
    written = [r["principal"] for r in sink.records]
    assert len(written) == len(set(written)) == 8000 == writer.written
    for t in range(4):
        mine = [p for p in written if p.startswith(f"t{t}-")]
        assert mine == [f"t{t}-{i}" for i in range(2000)]
    writer.submit(entry("after"))  # the thread sleeps until woken again, then writes it
    assert writer.flush(10.0)
    assert "after" == sink.records[-1]["principal"]
    writer.close()
