"""`invguard check`: load a policy as the server does; exit 1 naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bento_invguard import Profile, hash_key

from .conftest import Run


def write_policy(folder: Path, **overrides: object) -> Path:
    data: dict[str, object] = {
        "keys": [{"id": "alice", "sha256": hash_key("a"), "tier": "public"}],
        "keys_from": {"env": "INVGUARD_KEYS"},
        "tiers": {"public": {"output": "label"}, "trusted": {"output": "full"}},
        "input": {"shape": [3], "min": 0.0, "max": 1.0},
    }
    data.update(overrides)
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_summarises_the_starter_policy(run: Run, project: Path) -> None:
    """Tiers with their output and key count, the key sources, the input checks."""
    result = run("check", project / "invguard.yaml")
    assert 0 == result.code, result.err
    assert "OK" in result.out.splitlines()[0]
    lines = result.out.splitlines()
    public = next(line for line in lines if line.strip().startswith("public"))
    assert "output label" in public and "keys 1" in public
    partner = next(line for line in lines if line.strip().startswith("partner"))
    assert "top_k (k=3, 2 decimals)" in partner
    assert "keys: 3" in result.out
    assert "input checks: dtype float; finite" in result.out
    assert "anonymous callers: refused" in result.out


def test_check_counts_keys_from_the_environment(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys in INVGUARD_KEYS are loaded and counted per tier like the server does."""
    path = write_policy(tmp_path)
    entry = {"id": "ops", "sha256": hash_key("o"), "tier": "trusted"}
    monkeypatch.setenv("INVGUARD_KEYS", json.dumps([entry]))
    result = run("check", path)
    assert 0 == result.code, result.err
    trusted = next(line for line in result.out.splitlines() if line.strip().startswith("trusted"))
    assert "keys 1" in trusted
    assert "keys: 2" in result.out


def test_check_shows_the_profile(run: Run, tmp_path: Path) -> None:
    """A valid profile is loaded and described."""
    Profile.fit(np.random.default_rng(0).random((40, 3))).save(tmp_path / "p.json")
    result = run("check", write_policy(tmp_path, input={"shape": [3], "profile": "p.json"}))
    assert 0 == result.code, result.err
    assert "profile p.json (3 features, fitted on 40 rows" in result.out


def test_check_warns_when_no_key_can_call(run: Run, tmp_path: Path) -> None:
    """No keys and no anonymous tier: still valid, but every call would be refused."""
    result = run("check", write_policy(tmp_path, keys=[]))
    assert 0 == result.code
    assert "warning: no keys" in result.out


def test_check_missing_file_is_exit_2(run: Run, tmp_path: Path) -> None:
    """A file that is not there is a bad argument, not a failed check."""
    result = run("check", tmp_path / "nope.yaml")
    assert 2 == result.code
    assert "nope.yaml: no such file" in result.err


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tiers": {"public": {"output": "everything"}}}, "tiers.public.output"),
        ({"anonymous_tier": "guest"}, "anonymous_tier"),
        ({"input": {"min": 5, "max": 1}}, "input"),
        ({"surprise": 1}, "surprise"),
        ({"keys": [{"id": "a", "sha256": hash_key("a"), "tier": "gold"}]}, "keys.0.tier"),
    ],
)
def test_check_names_the_bad_field(
    run: Run, tmp_path: Path, overrides: dict[str, object], field: str
) -> None:
    """An invalid policy fails the check (exit 1) and the message names the field."""
    result = run("check", write_policy(tmp_path, **overrides))
    assert 1 == result.code
    assert field in result.err
    assert "" == result.out


def test_check_fails_on_yaml_syntax(run: Run, tmp_path: Path) -> None:
    """A policy that is not YAML fails the check."""
    path = tmp_path / "p.yaml"
    path.write_text("tiers: [unclosed\n")
    result = run("check", path)
    assert 1 == result.code
    assert "p.yaml: not valid yaml" in result.err


def test_check_fails_on_a_bad_key_file(run: Run, project: Path) -> None:
    """A key for a tier the policy lacks is named."""
    (project / "keys.yaml").write_text(
        yaml.safe_dump({"keys": [{"id": "z", "sha256": hash_key("z"), "tier": "gold"}]})
    )
    result = run("check", project / "invguard.yaml")
    assert 1 == result.code
    assert "key 'z': no tier named 'gold'" in result.err


def test_check_fails_on_a_missing_required_key_file(run: Run, project: Path) -> None:
    """The starter policy requires its key file."""
    (project / "keys.yaml").unlink()
    result = run("check", project / "invguard.yaml")
    assert 1 == result.code
    assert "keys.yaml: file not found" in result.err


def test_check_fails_on_malformed_env_keys(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INVGUARD_KEYS that is not JSON is named."""
    monkeypatch.setenv("INVGUARD_KEYS", "{not json")
    result = run("check", write_policy(tmp_path))
    assert 1 == result.code
    assert "INVGUARD_KEYS" in result.err


def test_check_fails_on_a_missing_profile(run: Run, tmp_path: Path) -> None:
    """input.profile must exist."""
    result = run("check", write_policy(tmp_path, input={"profile": "gone.json"}))
    assert 1 == result.code
    assert "gone.json: file not found" in result.err


def test_check_fails_on_a_profile_of_another_shape(run: Run, tmp_path: Path) -> None:
    """A profile fitted on rows of another shape than input.shape is refused."""
    Profile.fit(np.random.default_rng(0).random((40, 5))).save(tmp_path / "p.json")
    result = run("check", write_policy(tmp_path, input={"shape": [3], "profile": "p.json"}))
    assert 1 == result.code
    assert "input.profile" in result.err
