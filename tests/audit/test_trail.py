"""The audit trail of a guarded service: one JSON line per query, digests not raw values."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import guard
from bento_invguard.integration.guard import GUARD_ATTR
from bento_invguard.telemetry import attributes as a

from ..conftest import forget_bentoml_metrics
from ..telemetry.helpers import ROW, Served, scores, telemetry_policy

ROWS = [ROW, [3.0, 0.0, 1.0, 0.0]]


def digest(rows: list[list[float]]) -> str:
    return hashlib.sha256(np.asarray(rows, dtype=np.float64).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def served(
    serve: Callable[..., Served], keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Served:
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    return serve(telemetry_policy(keys, audit={"path": str(audit)}), keys, audit)


def test_one_record_per_query_with_digest_and_summary(served: Served) -> None:
    """An allowed query's record: who, what digest, summary statistics, what was answered."""
    before = len(served.audit_records())
    assert 200 == served.post("/predict", ROWS, tier="public").status_code
    records = served.audit_records()
    assert before + 1 == len(records)
    record = records[-1]
    values = np.asarray(ROWS)
    assert "user-public" == record["principal"]
    assert "public" == record["tier"]
    assert "predict" == record["endpoint"]
    assert 200 == record["status"]
    assert "allow" == record["decision"]
    assert record["reason"] is None
    assert {
        "sha256": digest(ROWS),
        "rows": 2,
        "shape": [2, 4],
        "dtype": "float64",
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
    } == record["input"]
    predicted = [int(i) for i in scores(values).argmax(axis=1)]
    assert {"mode": "label", "predicted": predicted} == record["output"]
    assert "access" == record["decisions"][0]["control"]
    assert {"score", "reasons", "flagged", "degraded"} == set(record["risk"])


def test_no_raw_input_or_scores_by_default(served: Served) -> None:
    """capture: digest (the default) keeps no raw rows and no model scores."""
    served.post("/predict", ROWS, tier="trusted")
    record = served.audit_records()[-1]
    assert "raw" not in record
    text = str(record)
    assert str(ROWS[0]) not in text and str(ROWS[1]) not in text
    assert "0.0, 1.0, 0.0]" not in text


def test_rejections_are_recorded_with_their_reason(served: Served) -> None:
    """A 401 and a 422 leave records with decision reject and the contract's reason."""
    served.post("/predict", ROWS)
    served.post("/predict", [[1.0, 2.0, 99.0, 3.0]], tier="trusted")
    unauthenticated, invalid = served.audit_records()[-2:]
    assert ("reject", "unauthenticated", 401, None) == (
        unauthenticated["decision"],
        unauthenticated["reason"],
        unauthenticated["status"],
        unauthenticated["principal"],
    )
    assert ("reject", "invalid_input", 422, "user-trusted") == (
        invalid["decision"],
        invalid["reason"],
        invalid["status"],
        invalid["principal"],
    )
    assert "sha256" not in invalid["input"]  # never validated: nothing to digest


def test_capture_full_keeps_raw_rows_and_warns_at_startup(
    serve: Callable[..., Served],
    keys: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """capture: full adds raw input and the model's full scores, after a startup warning."""
    audit = tmp_path / "full.jsonl"
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        served = serve(
            telemetry_policy(keys, audit={"path": str(audit), "capture": "full"}), keys, audit
        )
    assert any("capture is 'full'" in r.getMessage() for r in caplog.records)
    served.post("/predict", ROWS, tier="public")
    record = served.audit_records()[-1]
    assert ROWS == record["raw"]["input"]
    assert np.allclose(scores(np.asarray(ROWS)), record["raw"]["scores"])
    assert digest(ROWS) == record["input"]["sha256"]


def test_a_broken_sink_never_fails_a_request(
    serve: Callable[..., Served],
    keys: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unwritable audit path: requests still succeed; failures are counted and logged once."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file where the audit directory should be")
    audit = not_a_dir / "audit.jsonl"
    served = serve(telemetry_policy(keys, audit={"path": str(audit)}), keys, audit)
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        started = time.perf_counter()
        statuses = [served.post("/predict", [ROW], tier="public").status_code for _ in range(5)]
        elapsed = time.perf_counter() - started
        assert served.recorder.flush(10.0)
    assert [200] * 5 == statuses
    assert elapsed < 5.0
    writer = served.recorder.audit
    assert writer is not None
    assert 5 == writer.errors and 0 == writer.written
    failures = [r for r in caplog.records if "audit sink jsonl failed" in r.getMessage()]
    assert 1 == len(failures)  # rate limited: one report for five failures
    points = served.otel.points(a.METRIC_AUDIT_ERRORS)
    assert 5 == sum(p.value for p in points)


def test_guard_only_services_are_audited_too(keys: dict[str, str], tmp_path: Path) -> None:
    """Without @protect's middleware, the @guard wrapper opens and records the query."""
    audit = tmp_path / "guard.jsonl"
    policy = telemetry_policy(keys, audit={"path": str(audit)})

    @bentoml.service
    class GuardOnly:
        @bentoml.api
        @guard(policy)
        def predict(self, x: np.ndarray) -> np.ndarray:
            return scores(x)

    forget_bentoml_metrics()
    with TestClient(GuardOnly.to_asgi()) as client:
        ok = client.post(
            "/predict",
            content=json.dumps({"x": ROWS}),
            headers={
                "Authorization": f"Bearer {keys['public']}",
                "content-type": "application/json",
            },
        )
        refused = client.post("/predict", content=json.dumps({"x": ROWS}))
    assert (200, 401) == (ok.status_code, refused.status_code)
    recorder = getattr(GuardOnly.apis["predict"].func, GUARD_ATTR).recorder
    assert recorder.flush(10.0)
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [("user-public", 200, "allow"), (None, 401, "reject")] == [
        (r["principal"], r["status"], r["decision"]) for r in records
    ]
    assert digest(ROWS) == records[0]["input"]["sha256"]
