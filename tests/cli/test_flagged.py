"""`invguard flagged`: flagged queries exported from a real audit trail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import Policy, protect
from bento_invguard.cli import main

from ..conftest import forget_bentoml_metrics, policy_dict
from .conftest import Run


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


def write_trail(path: Path, *records: dict[str, Any] | str) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


def flagged_at(time: str, principal: str = "mallory") -> dict[str, Any]:
    return {"time": time, "principal": principal, "risk": {"flagged": True}, "reason": None}


def test_since_compares_times_not_strings(run: Run, tmp_path: Path) -> None:
    """Offsets and a trailing Z are understood; a time without an offset is UTC."""
    trail = write_trail(
        tmp_path / "audit.jsonl",
        flagged_at("2025-01-31T10:00:00+00:00", "early"),
        flagged_at("2025-01-31T12:00:00.500000+00:00", "late"),
    )
    for since in ("2025-01-31T13:00:00+02:00", "2025-01-31T11:00Z", "2025-01-31T11:00:00"):
        result = run("flagged", trail, "--since", since)
        assert result.code == 0, (since, result.err)
        assert [json.loads(line)["principal"] for line in result.out.splitlines()] == ["late"]
    assert run("flagged", trail, "--since", "2025-01-31").code == 0
    assert run("flagged", trail, "--since", "2025-02-01T00:00Z").code == 1


def test_since_that_is_not_a_time_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    trail = write_trail(tmp_path / "audit.jsonl", flagged_at("2025-01-31T10:00:00+00:00"))
    result = run("flagged", trail, "--since", "yesterday")
    assert result.code == 2
    assert "--since 'yesterday'" in result.err and result.out == ""


def test_output_in_a_missing_folder_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    trail = write_trail(tmp_path / "audit.jsonl", flagged_at("2025-01-31T10:00:00+00:00"))
    target = tmp_path / "missing" / "dir" / "f.jsonl"
    result = run("flagged", trail, "-o", target)
    assert result.code == 2
    assert f"{target}: cannot write" in result.err


def test_unreadable_input_is_a_usage_error(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = write_trail(tmp_path / "audit.jsonl", flagged_at("2025-01-31T10:00:00+00:00"))
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == trail:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    result = run("flagged", trail)
    assert result.code == 2
    assert f"{trail}: cannot read: Permission denied" in result.err


def test_malformed_records_are_skipped_and_named(run: Run, tmp_path: Path) -> None:
    trail = write_trail(
        tmp_path / "audit.jsonl",
        {"time": "2025-01-31T09:00:00+00:00", "risk": "high"},
        "[1, 2]",
        "{not json",
        flagged_at("2025-01-31T10:00:00+00:00"),
    )
    result = run("flagged", trail)
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 1
    assert f'{trail}:1: "risk" is not an object, skipped' in result.err
    assert f"{trail}:2: not a JSON object, skipped" in result.err
    assert f"{trail}:3: not JSON, skipped" in result.err
