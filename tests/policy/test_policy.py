"""Policy model and loading: valid shapes load, bad ones name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bento_invguard import Policy, PolicyError, hash_key
from bento_invguard.policy import load_keys, policy_from_mapping

from ..conftest import policy_dict

ISSUE_EXAMPLE = """
keys:
  - id: alice
    sha256: "{digest}"
    tier: public
anonymous_tier: null
tiers:
  public:
    output: label
    endpoints: ["*"]
  partner:
    output: top_k
    k: 3
    decimals: 2
  trusted:
    output: full
input:
  shape: [64]
  dtype: float
  min: 0.0
  max: 16.0
  max_body_bytes: 1048576
"""


def test_issue_example_loads_from_yaml(tmp_path: Path) -> None:
    """The policy shape from the foundation issue loads as written."""
    path = tmp_path / "invguard.yaml"
    path.write_text(ISSUE_EXAMPLE.format(digest=hash_key("k")))
    policy = Policy.from_file(path)
    assert "top_k" == policy.tiers["partner"].output
    assert (64,) == policy.input.shape
    assert tmp_path == policy.base_dir


def test_json_policy_loads(tmp_path: Path, tier_keys: dict[str, str]) -> None:
    """JSON files load too."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy_dict(tier_keys)))
    assert 3 == len(Policy.from_file(path).keys)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tiers": {"public": {"output": "everything"}}}, "tiers.public.output"),
        ({"tiers": {"public": {"k": 0}}}, "tiers.public.k"),
        ({"anonymous_tier": "ghost"}, "anonymous_tier"),
        ({"keys": [{"id": "a", "sha256": "not-hex", "tier": "public"}]}, "keys.0.sha256"),
        ({"keys": [{"id": "a", "sha256": "a" * 64, "tier": "gold"}]}, "keys.0.tier"),
        ({"input": {"min": 5, "max": 1}}, "input"),
        ({"input": {"shape": [0]}}, "input.shape"),
        ({"tiers": {}}, "tiers"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_policy_names_the_field(
    tier_keys: dict[str, str], change: dict[str, object], field: str
) -> None:
    """Validation errors name the dotted field that is wrong."""
    data = policy_dict(tier_keys)
    data.update(change)
    with pytest.raises(PolicyError) as info:
        policy_from_mapping(data)
    assert field in str(info.value)


def test_duplicate_key_digest_is_refused(tier_keys: dict[str, str]) -> None:
    """The same key listed twice is a configuration error, not two principals."""
    digest = hash_key("same")
    data = policy_dict(
        tier_keys,
        keys=[
            {"id": "a", "sha256": digest, "tier": "public"},
            {"id": "b", "sha256": digest, "tier": "trusted"},
        ],
    )
    with pytest.raises(PolicyError, match="listed twice"):
        policy_from_mapping(data)


def test_missing_and_malformed_files_are_clear(tmp_path: Path) -> None:
    """A missing file and a broken YAML file each give a message naming the file."""
    with pytest.raises(PolicyError, match="file not found"):
        Policy.from_file(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tiers: [unclosed")
    with pytest.raises(PolicyError, match="broken.yaml: not valid"):
        Policy.from_file(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string")
    with pytest.raises(PolicyError, match="mapping"):
        Policy.from_file(scalar)


def test_keys_from_file_and_env(
    tmp_path: Path, tier_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys are read from the named file (relative to the policy) and the environment."""
    (tmp_path / "keys.yaml").write_text(
        yaml.safe_dump({"keys": [{"id": "filed", "sha256": hash_key("f"), "tier": "partner"}]})
    )
    data = policy_dict(tier_keys, keys=[], keys_from={"file": "keys.yaml", "env": "MY_KEYS"})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    policy = Policy.from_file(path)
    env_keys = [{"id": "env", "sha256": hash_key("e"), "tier": "trusted"}]
    monkeypatch.setenv("MY_KEYS", json.dumps(env_keys))
    keys = load_keys(policy)
    assert ["filed", "env"] == [k.id for k in keys]


def test_required_key_file_missing_refuses_to_start(
    tmp_path: Path, tier_keys: dict[str, str]
) -> None:
    """A key file the policy requires must exist (fail closed)."""
    data = policy_dict(tier_keys, keys_from={"file": "nope.yaml", "env": None})
    with pytest.raises(PolicyError, match="nope.yaml: file not found"):
        load_keys(policy_from_mapping(data, base_dir=tmp_path), environment=False)


def test_env_keys_must_be_json_of_known_tiers(
    tier_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broken JSON or unknown tiers in the key variable are startup errors."""
    policy = policy_from_mapping(policy_dict(tier_keys, keys_from={"env": "K"}))
    monkeypatch.setenv("K", "{nope")
    with pytest.raises(PolicyError, match="variable K: not a JSON list of keys"):
        load_keys(policy)
    monkeypatch.setenv("K", json.dumps([{"id": "x", "sha256": hash_key("x"), "tier": "gold"}]))
    with pytest.raises(PolicyError, match="no tier named 'gold'"):
        load_keys(policy)
    clash = [{"id": "user-public", "sha256": hash_key("x"), "tier": "public"}]
    monkeypatch.setenv("K", json.dumps(clash))
    with pytest.raises(PolicyError, match="id is used by two keys"):
        load_keys(policy)
