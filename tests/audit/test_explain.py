"""The explain hook: small explanations on the audit records of flagged callers only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bento_invguard import QueryContext
from bento_invguard.integration.recorder import Recorder
from bento_invguard.telemetry import TelemetryOptions
from bento_invguard.telemetry import attributes as a

from ..telemetry.helpers import make_otel, telemetry_policy

X = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
SCORES = np.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])


def top_feature(x_row: Any, scores_row: Any) -> dict[str, Any]:
    return {
        "top_feature": int(np.argmax(x_row)),
        "margin": float(abs(scores_row[0] - scores_row[1])),
    }


def record_query(recorder: Recorder, *, flagged: bool) -> None:
    ctx = QueryContext(endpoint="predict", principal="mallory", tier_name="public")
    recorder.start(ctx)
    ctx.input, ctx.scores, ctx.rows = X, SCORES, len(X)
    ctx.predicted = [int(i) for i in SCORES.argmax(axis=1)]
    ctx.flagged, ctx.risk = flagged, 0.6 if flagged else 0.1
    ctx.status = 200
    recorder.finish(ctx)


def recorder_with(tmp_path: Path, explain: Any, **audit: Any) -> tuple[Recorder, Path]:
    path = tmp_path / "audit.jsonl"
    policy = telemetry_policy({}, audit={"path": str(path), **audit})
    otel = make_otel()
    options = TelemetryOptions(
        tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, explain=explain
    )
    return Recorder(policy, options), path


def records(recorder: Recorder, path: Path) -> list[dict[str, Any]]:
    assert recorder.flush(10.0)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_flagged_queries_get_explanations_others_do_not(tmp_path: Path) -> None:
    """One explanation per row (up to explain_rows) for a flagged caller; none otherwise."""
    recorder, path = recorder_with(tmp_path, top_feature, explain_rows=2)
    record_query(recorder, flagged=False)
    record_query(recorder, flagged=True)
    plain, flagged = records(recorder, path)
    assert "explanations" not in plain
    assert [{"top_feature": 3, "margin": 0.8}, {"top_feature": 0, "margin": 0.6}] == [
        {k: round(v, 6) if isinstance(v, float) else v for k, v in e.items()}
        for e in flagged["explanations"]
    ]
    assert "raw" not in flagged  # explanations do not imply raw capture
    recorder.close()


def test_a_raising_hook_is_swallowed_and_counted(tmp_path: Path) -> None:
    """A hook that raises leaves None per row, the record is still written, errors counted."""

    def broken(x_row: Any, scores_row: Any) -> dict[str, Any]:
        raise ValueError("explainer bug")

    recorder, path = recorder_with(tmp_path, broken, explain_rows=3)
    record_query(recorder, flagged=True)
    (record,) = records(recorder, path)
    assert [None, None, None] == record["explanations"]
    assert "mallory" == record["principal"]
    recorder.close()


def test_large_or_odd_answers_are_bounded(tmp_path: Path) -> None:
    """An answer over explain_max_bytes becomes a note; a non-mapping counts as a failure."""
    answers = iter([{"blob": "x" * 5000}, ["not", "a", "dict"]])

    def hook(x_row: Any, scores_row: Any) -> Any:
        return next(answers)

    recorder, path = recorder_with(tmp_path, hook, explain_rows=2, explain_max_bytes=256)
    record_query(recorder, flagged=True)
    (record,) = records(recorder, path)
    big, odd = record["explanations"]
    assert {"truncated": True, "max_bytes": 256} == {k: big[k] for k in ("truncated", "max_bytes")}
    assert big["bytes"] > 5000
    assert odd is None
    recorder.close()


def test_explain_errors_metric(tmp_path: Path) -> None:
    """invguard.explain.errors counts every failed call of the hook."""
    path = tmp_path / "audit.jsonl"
    otel = make_otel()
    recorder = Recorder(
        telemetry_policy({}, audit={"path": str(path), "explain_rows": 3}),
        TelemetryOptions(meter_provider=otel.meter_provider, explain=lambda x, s: 1 / 0),
    )
    record_query(recorder, flagged=True)
    assert recorder.flush(10.0)
    (point,) = otel.points(a.METRIC_EXPLAIN_ERRORS)
    assert 3 == point.value
    recorder.close()
