"""The three sinks: rotated JSON lines, bentoml.monitor, OpenTelemetry logs."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogExporter, SimpleLogRecordProcessor

from bento_invguard.audit import BentoMLMonitorSink, JsonlSink, OTelLogSink, audit_path
from bento_invguard.audit.sinks import shared_jsonl_sink
from bento_invguard.policy.observability import AuditPolicy

RECORD = {
    "schema": 1,
    "time": "2025-01-01T00:00:00+00:00",
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
    "span_id": "b7ad6b7169203331",
    "principal": "alice",
    "tier": "public",
    "endpoint": "predict",
    "status": 200,
    "decision": "allow",
    "reason": None,
    "input": {"sha256": "ab" * 32, "rows": 1, "shape": [1, 4]},
    "output": {"mode": "label", "predicted": [3]},
    "decisions": [{"control": "access", "outcome": "authenticated", "detail": "public"}],
    "risk": {"score": 0.25, "reasons": ["near_duplicates"], "flagged": False, "degraded": False},
    "model": None,
}


def test_jsonl_rotates_and_keeps_backups(tmp_path: Path) -> None:
    """Beyond max_bytes the file rotates to .1, .2 ...; at most `backups` old files remain."""
    path = tmp_path / "deep" / "audit.jsonl"
    sink = JsonlSink(path, max_bytes=2048, backups=2)
    for i in range(60):
        sink.write([{**RECORD, "principal": f"p{i}"}])
    sink.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"] == files
    lines = [line for f in files for line in (path.parent / f).read_text().splitlines()]
    assert all(json.loads(line)["schema"] == 1 for line in lines)
    assert all((path.parent / f).stat().st_size <= 2048 for f in files)
    newest = [json.loads(line)["principal"] for line in path.read_text().splitlines()]
    assert "p59" == newest[-1]


def test_writers_of_one_file_share_one_sink(tmp_path: Path) -> None:
    """Two writers naming one file get one sink: whole lines, one rotation, closed last."""
    path = tmp_path / "shared.jsonl"
    first = shared_jsonl_sink(path, max_bytes=1 << 20, backups=1)
    second = shared_jsonl_sink(tmp_path / "." / "shared.jsonl", max_bytes=1 << 20, backups=1)
    assert first is second
    padding = "x" * 3000  # larger than one write of a buffered file

    def write(sink: JsonlSink, who: str) -> None:
        for i in range(100):
            sink.write([{"principal": who, "i": i, "pad": padding}])

    threads = [
        threading.Thread(target=write, args=(s, w)) for s, w in ((first, "a"), (second, "b"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first.close()
    second.write([{"principal": "still open"}])
    second.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert 201 == len(rows)
    assert {"a": 100, "b": 100, "still open": 1} == {
        who: sum(r["principal"] == who for r in rows) for who in ("a", "b", "still open")
    }


def test_jsonl_writes_strict_json(tmp_path: Path) -> None:
    """Non-finite floats become null: every line parses as standard JSON."""
    sink = JsonlSink(tmp_path / "a.jsonl", max_bytes=4096, backups=0)
    sink.write([{**RECORD, "input": {"min": float("nan"), "max": float("inf")}}])
    sink.close()
    line = (tmp_path / "a.jsonl").read_text()
    assert {"min": None, "max": None} == json.loads(line)["input"]
    assert "NaN" not in line and "Infinity" not in line


def test_audit_path_expands_home_worker_and_policy_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """${VAR} from the environment, {worker} as the worker index, relative to the policy."""
    monkeypatch.setenv("AUDIT_ROOT", str(tmp_path / "root"))
    assert tmp_path / "root" / "a.0.jsonl" == audit_path(
        AuditPolicy(path="${AUDIT_ROOT}/a.{worker}.jsonl"), tmp_path
    )
    assert tmp_path / "rel" / "a.jsonl" == audit_path(AuditPolicy(path="rel/a.jsonl"), tmp_path)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / "invguard" / "audit" / "audit.0.jsonl"
    assert expected == audit_path(AuditPolicy(), tmp_path)


def test_otel_logs_sink_emits_one_log_record_linked_to_the_span() -> None:
    """Body is the JSON record; attributes filter; trace and span ids link to the query."""
    exporter = InMemoryLogExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    sink = OTelLogSink(provider)
    sink.write([RECORD])
    sink.close()
    (emitted,) = exporter.get_finished_logs()
    log = emitted.log_record
    assert RECORD == json.loads(str(log.body))
    assert "alice" == log.attributes["invguard.principal"]
    assert "allow" == log.attributes["invguard.decision"]
    assert "invguard.audit" == log.event_name
    assert int(RECORD["trace_id"], 16) == log.trace_id
    assert int(RECORD["span_id"], 16) == log.span_id


def test_bentoml_monitor_sink_writes_monitor_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bentoml.monitor's default monitor writes one data row per record, same columns."""
    monkeypatch.chdir(tmp_path)  # BentoML's default monitor log_path is ./monitoring
    sink = BentoMLMonitorSink("invguard_audit_test")
    sink.write([RECORD, {**RECORD, "principal": "bob"}])
    data_dir = tmp_path / "monitoring" / "invguard_audit_test" / "data"
    lines = [json.loads(line) for f in data_dir.iterdir() for line in f.read_text().splitlines()]
    assert ["alice", "bob"] == [row["principal"] for row in lines]
    assert "ab" * 32 == lines[0]["input_sha256"]
    assert [3] == lines[0]["predicted"]
