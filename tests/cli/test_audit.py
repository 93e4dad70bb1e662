"""`invguard audit`: controls per API, findings of what is missing, a risk rating."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bento_invguard import Policy, Profile, hash_key
from bento_invguard.cli import audit_controls, audit_findings, describe

from .conftest import Run

SOUND = {
    "keys": [
        {"id": "p", "sha256": hash_key("p"), "tier": "public"},
        {"id": "t", "sha256": hash_key("t"), "tier": "trusted"},
    ],
    "keys_from": {"env": None},
    "tiers": {
        "public": {"output": "label", "endpoints": ["predict"], "rate_limit": "5/second;500/day"},
        "trusted": {"output": "top_k", "k": 2, "rate_limit": "10/second;5000/day"},
    },
    "input": {"shape": [3], "min": 0.0, "max": 1.0, "profile": "profile.json"},
}


def write_policy(folder: Path, data: dict[str, Any], name: str = "policy.yaml") -> Path:
    Profile.fit(np.random.default_rng(0).random((30, 3))).save(folder / "profile.json")
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def with_changes(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(SOUND))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = data
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


def audit_json(run: Run, *argv: str | Path) -> tuple[int, dict[str, Any]]:
    result = run("audit", *argv, "--json")
    assert result.code in (0, 1), result.err
    return result.code, json.loads(result.out)


def messages(report: dict[str, Any], severity: str) -> list[str]:
    return [f["message"] for f in report["findings"] if f["severity"] == severity]


def test_sound_policy_has_no_high_finding(run: Run, tmp_path: Path) -> None:
    """Keys required, label/top-k with budgets, full input checks: exit 0, low exploitability."""
    code, report = audit_json(run, write_policy(tmp_path, SOUND))
    assert 0 == code
    assert [] == messages(report, "high")
    api = report["apis"][0]
    assert "*" == api["name"]
    controls = api["controls"]
    assert "on" == controls["access_control"]["status"]
    assert "on" == controls["input_validation"]["status"]
    assert "on" == controls["output_truncation"]["status"]
    assert "on" == controls["rate_limits"]["status"]
    assert "low" == report["risk"]["exploitability"]["level"]
    assert "moderate" == report["risk"]["technical_impact"]["level"]
    for factor in ("exploitability", "detectability", "technical_impact"):
        assert report["risk"][factor]["reason"]


def test_full_scores_without_budget_is_high(run: Run, tmp_path: Path) -> None:
    """A tier with full output and no rate limit: a high finding, exit 1."""
    data = with_changes(tiers__trusted={"output": "full"})
    code, report = audit_json(run, write_policy(tmp_path, data))
    assert 1 == code
    assert any(
        "'trusted' gets full scores with no rate limit" in m for m in messages(report, "high")
    )
    assert "partial" == report["apis"][0]["controls"]["rate_limits"]["status"]
    assert "high" == report["risk"]["technical_impact"]["level"]


def test_rate_limit_without_budget_is_moderate(run: Run, tmp_path: Path) -> None:
    """Full output limited per second but with no long window: moderate, not high."""
    data = with_changes(tiers__trusted={"output": "full", "rate_limit": "10/second"})
    code, report = audit_json(run, write_policy(tmp_path, data))
    assert 0 == code
    assert any("but no query budget" in m for m in messages(report, "moderate"))


def test_anonymous_full_scores_is_high(run: Run, tmp_path: Path) -> None:
    """Callers without a key getting full scores: high, and exploitability high."""
    data = with_changes(anonymous_tier="guest", tiers__guest={"output": "full"})
    code, report = audit_json(run, write_policy(tmp_path, data))
    assert 1 == code
    assert any("without a key get full scores" in m for m in messages(report, "high"))
    assert "high" == report["risk"]["exploitability"]["level"]
    assert "partial" == report["apis"][0]["controls"]["access_control"]["status"]


def test_anonymous_labels_is_moderate(run: Run, tmp_path: Path) -> None:
    """Anonymous callers that only get labels: moderate."""
    data = with_changes(
        anonymous_tier="guest", tiers__guest={"output": "label", "rate_limit": "1/second;50/day"}
    )
    code, report = audit_json(run, write_policy(tmp_path, data))
    assert 0 == code
    assert any("without a key are answered" in m for m in messages(report, "moderate"))


def test_missing_input_checks_are_reported(run: Run, tmp_path: Path) -> None:
    """No profile, no range, no shape, no row cap: each one a finding; with none of the
    first three the shared view is off, a high finding (exit 1)."""
    data = with_changes(input={"max_rows": None, "finite": False})
    code, report = audit_json(run, write_policy(tmp_path, data))
    assert 1 == code
    assert any("the shared view is off" in m for m in messages(report, "high"))
    moderate, low = messages(report, "moderate"), messages(report, "low")
    assert any("no reference profile" in m for m in moderate)
    assert any("no input range" in m for m in moderate)
    assert any("no input shape" in m for m in low)
    assert any("non-finite" in m for m in low)
    assert any("no cap on rows" in m for m in low)
    assert "partial" == report["apis"][0]["controls"]["input_validation"]["status"]


def test_monitoring_is_reported_when_absent(run: Run, tmp_path: Path) -> None:
    """This version has no monitor field: said plainly, and a moderate finding."""
    _, report = audit_json(run, write_policy(tmp_path, SOUND))
    monitoring = report["apis"][0]["controls"]["monitoring"]
    if "monitor" not in Policy.model_fields:
        assert "not available in this version" == monitoring["status"]
    assert any("probing" in m for m in messages(report, "moderate")) == (
        monitoring["status"] != "on"
    )


def test_rate_limits_unavailable_in_an_older_version(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a rate_limit field, the control is 'not available' and full output is high."""
    for module in (audit_controls, audit_findings):
        monkeypatch.setattr(module, "rate_limits_available", lambda: False)
    data = with_changes(tiers__trusted={"output": "full"})
    code, report = audit_json(run, write_policy(tmp_path, data))
    assert 1 == code
    assert "not available in this version" == report["apis"][0]["controls"]["rate_limits"]["status"]
    assert any("this version has no rate limits" in m for m in messages(report, "high"))


def test_monitor_field_of_a_later_version_is_read() -> None:
    """A policy with a `monitor` section (added later) is reported as on or off."""
    from types import SimpleNamespace

    class LaterPolicy(Policy):
        monitor: Any = None

    base = {"tiers": {"t": {}}}
    original = describe.Policy
    try:
        describe.Policy = LaterPolicy  # type: ignore[misc]
        assert "not configured" == describe.monitor_status(LaterPolicy.model_validate(base))[0]
        on = LaterPolicy.model_validate({**base, "monitor": SimpleNamespace(enabled=True)})
        off = LaterPolicy.model_validate({**base, "monitor": SimpleNamespace(enabled=False)})
        assert "on" == describe.monitor_status(on)[0]
        assert "off" == describe.monitor_status(off)[0]
    finally:
        describe.Policy = original  # type: ignore[misc]


def test_text_report(run: Run, tmp_path: Path) -> None:
    """The text report shows each control, the findings and the three risk factors."""
    result = run("audit", write_policy(tmp_path, with_changes(tiers__trusted={"output": "full"})))
    assert 1 == result.code
    for line in (
        "access control", "input validation", "output truncation", "rate limits", "monitoring",
        "Findings", "HIGH", "exploitability", "detectability", "technical impact", "overall",
    ):  # fmt: skip
        assert line in result.out


# ---------------------------------------------------------------- services


def write_service(folder: Path, body: str, policy: dict[str, Any] = SOUND) -> str:
    """A service module with a unique name (modules are cached) beside policy.yaml."""
    write_policy(folder, policy)
    name = f"audited_{uuid.uuid4().hex[:8]}"
    header = """\
        import bentoml
        import numpy as np
        from bento_invguard import guard, protect
    """
    (folder / f"{name}.py").write_text(textwrap.dedent(header) + textwrap.dedent(body))
    return name


def test_audit_protected_service(run: Run, tmp_path: Path) -> None:
    """Every API of a protect()ed service is guarded and behind the middleware."""
    module = write_service(
        tmp_path,
        """
        @protect("policy.yaml")
        @bentoml.service
        class Svc:
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x

            @bentoml.api
            def scores(self, x: np.ndarray) -> np.ndarray:
                return x
        """,
    )
    code, report = audit_json(run, f"{module}:Svc", "--working-dir", tmp_path)
    assert 0 == code
    assert {"kind": "service", "name": "Svc"} == report["target"]
    apis = {api["name"]: api for api in report["apis"]}
    assert {"predict", "scores"} == set(apis)
    assert {"protect"} == {api["guarded_by"] for api in apis.values()}
    assert "/predict" == apis["predict"]["route"]
    # public may call predict only: its keys and output show there and not on scores.
    assert "public 1" in apis["predict"]["controls"]["access_control"]["detail"]
    assert "public" not in apis["scores"]["controls"]["output_truncation"]["detail"]


def test_audit_finds_an_unguarded_api_and_guard_only(run: Run, tmp_path: Path) -> None:
    """An API without a guard is high; @guard without protect() is a low finding."""
    module = write_service(
        tmp_path,
        """
        @bentoml.service
        class Svc:
            @bentoml.api
            @guard("policy.yaml")
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x

            @bentoml.api
            def raw(self, x: np.ndarray) -> np.ndarray:
                return x
        """,
    )
    code, report = audit_json(run, f"{module}:Svc", "--working-dir", tmp_path)
    assert 1 == code
    apis = {api["name"]: api for api in report["apis"]}
    assert "guard" == apis["predict"]["guarded_by"]
    assert "none" == apis["raw"]["guarded_by"]
    assert "off" == apis["raw"]["controls"]["access_control"]["status"]
    high = [f for f in report["findings"] if f["severity"] == "high"]
    assert [["raw"]] == [f["apis"] for f in high]
    assert any(
        f["apis"] == ["predict"] and "@guard only" in f["message"]
        for f in report["findings"]
        if f["severity"] == "low"
    )
    assert "high" == report["risk"]["exploitability"]["level"]


def test_audit_service_from_the_current_folder(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--working-dir defaults to the current folder, as for `bentoml serve`."""
    module = write_service(
        tmp_path,
        """
        @protect("policy.yaml")
        @bentoml.service
        class Svc:
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x
        """,
    )
    monkeypatch.chdir(tmp_path)
    code, _ = audit_json(run, f"{module}:Svc")
    assert 0 == code


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Svc", "cannot load the service"),
        ("missing.yaml", "no such policy file"),
    ],
)
def test_audit_bad_target_is_exit_2(run: Run, tmp_path: Path, target: str, message: str) -> None:
    """A target that does not load is a bad argument: exit 2, reason on stderr."""
    result = run("audit", target, "--working-dir", tmp_path)
    assert 2 == result.code
    assert message in result.err
    assert "" == result.out


def test_audit_service_whose_guard_refuses_to_start(run: Run, tmp_path: Path) -> None:
    """A service whose policy is broken: exit 2 with the guard's own message."""
    module = write_service(
        tmp_path,
        """
        @protect("absent.yaml")
        @bentoml.service
        class Svc:
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x
        """,
    )
    result = run("audit", f"{module}:Svc", "--working-dir", tmp_path)
    assert 2 == result.code
    assert "the guard refused to start" in result.err
    assert "absent.yaml" in result.err


def test_audit_module_that_fails_to_import(run: Run, tmp_path: Path) -> None:
    """User code raising on import is reported with its exception type."""
    module = write_service(tmp_path, "raise RuntimeError('model server down')\n")
    result = run("audit", f"{module}:Svc", "--working-dir", tmp_path)
    assert 2 == result.code
    assert "model server down" in result.err


def test_audit_flags_an_api_that_returns_labels(run: Run, tmp_path: Path) -> None:
    """An API annotated to return one label per row: a high output finding naming it
    and saying what to change; under protect() the guard refuses to start, and audit
    says why."""
    module = write_service(
        tmp_path,
        """
        @bentoml.service
        class Svc:
            @bentoml.api
            @guard("policy.yaml")
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x

            @bentoml.api
            def classify(self, x: np.ndarray) -> list[int]:
                return [0]
        """,
    )
    code, report = audit_json(run, f"{module}:Svc", "--working-dir", tmp_path)
    assert 1 == code
    output = [f for f in report["findings"] if f["control"] == "output truncation"]
    assert ["classify"] == [api for f in output if f["severity"] == "high" for api in f["apis"]]
    assert any("class labels?" in f["message"] and "(n, classes)" in f["message"] for f in output)
    protected = write_service(
        tmp_path,
        """
        @protect("policy.yaml")
        @bentoml.service
        class Svc:
            @bentoml.api
            def classify(self, x: np.ndarray) -> list[int]:
                return [0]
        """,
    )
    refused = run("audit", f"{protected}:Svc", "--working-dir", tmp_path)
    assert 0 != refused.code
    assert "API 'classify' returns list[int]" in refused.err


def test_audit_reports_a_skipped_api_as_skip(run: Run, tmp_path: Path) -> None:
    """protect(skip=[...]): guarded_by skip and a low finding, not "not guarded"."""
    module = write_service(
        tmp_path,
        """
        @protect("policy.yaml", skip=["info"])
        @bentoml.service
        class Svc:
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x

            @bentoml.api
            def info(self) -> dict:
                return {}
        """,
    )
    code, report = audit_json(run, f"{module}:Svc", "--working-dir", tmp_path)
    apis = {api["name"]: api for api in report["apis"]}
    assert "skip" == apis["info"]["guarded_by"]
    info = [f for f in report["findings"] if "info" in f["apis"]]
    assert ["low"] == [f["severity"] for f in info]
    assert 0 == code


def test_top_k_with_k_at_the_class_count_is_reported_as_all_scores(
    run: Run, tmp_path: Path
) -> None:
    """--classes 2 with a top_k k=2 tier: every score is shown, so it is reported."""
    path = write_policy(tmp_path, SOUND)
    _, without = audit_json(run, path)
    _, with_classes = audit_json(run, path, "--classes", "2")
    assert not [f for f in without["findings"] if "top_k" in f["message"]]
    flagged = [
        f for f in with_classes["findings"] if "top_k with k=2 for 2 classes" in f["message"]
    ]
    assert ["moderate"] == [f["severity"] for f in flagged]
