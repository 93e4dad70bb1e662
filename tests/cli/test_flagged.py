"""`invguard flagged`: flagged queries exported from a real audit trail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from starlette.testclient import TestClient

from bento_invguard import Policy, protect
from bento_invguard.cli import main

from ..conftest import forget_bentoml_metrics, policy_dict


def probe(tier_keys: dict[str, str], audit_path: Path) -> None:
    """Serve a guarded toy model with a JSON-lines audit trail; probe it until blocked."""
    data = policy_dict(tier_keys, audit={"sink": "jsonl", "path": str(audit_path)})

    @protect(Policy.model_validate(data))
    @bentoml.service(name="audited")
    class Audited:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            z = np.asarray(x, dtype=float)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

    forget_bentoml_metrics()
    rng = np.random.default_rng(0)
    with TestClient(Audited.to_asgi(), raise_server_exceptions=False) as client:
        client.post(
            "/predict",
            content=json.dumps({"x": [[1.0, 7.0, 2.0, 3.0]]}),
            headers={"X-API-Key": tier_keys["partner"]},
        )
        for _ in range(40):
            row = list(np.clip(5.0 + rng.normal(0, 0.05, 4), 0, 10))
            client.post(
                "/predict",
                content=json.dumps({"x": [row]}),
                headers={"X-API-Key": tier_keys["trusted"]},
            )


def test_flagged_queries_are_exported(
    tier_keys: dict[str, str], tmp_path: Path, capsys: Any
) -> None:
    """Only the prober's flagged, degraded and blocked queries come out, oldest first."""
    probe(tier_keys, tmp_path / "audit" / "audit.jsonl")
    out = tmp_path / "flagged.jsonl"
    assert 0 == main(["flagged", str(tmp_path / "audit"), "-o", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and {"user-trusted"} == {r["principal"] for r in records}
    assert any(r["reason"] == "blocked" for r in records)
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)
    assert "raw" not in records[0]  # digests only unless the policy captures in full
    assert 1 == main(["flagged", str(tmp_path / "audit"), "--principal", "user-partner"])


def test_missing_audit_path_is_a_usage_error(tmp_path: Path, capsys: Any) -> None:
    """A path that does not exist is exit 2 with the path named."""
    assert 2 == main(["flagged", str(tmp_path / "nope")])
    assert "nope: no such file or folder" in capsys.readouterr().err
