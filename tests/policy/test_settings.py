"""INVGUARD_* environment overrides: read through pydantic-settings, bad values named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bento_invguard import PolicyError, hash_key
from bento_invguard.admin.endpoints import load_admin_keys
from bento_invguard.policy import Policy, load_keys, policy_from_mapping
from bento_invguard.policy.model import KeyEntry, key_clash
from bento_invguard.policy.settings import environment_settings, keys_from_environment
from bento_invguard.storage import storage_uri

from ..conftest import policy_dict

VARIABLES = ("INVGUARD_POLICY", "INVGUARD_STORAGE", "INVGUARD_ADMIN_KEYS", "INVGUARD_KEYS")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_unset_variables_override_nothing() -> None:
    """No INVGUARD_* variable: no policy path, no storage URI, no admin key."""
    settings = environment_settings()
    assert (None, None, ()) == (settings.policy, settings.storage, settings.admin_keys)


def test_values_are_read_and_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each documented variable lands in its field, JSON lists as key entries."""
    monkeypatch.setenv("INVGUARD_POLICY", "/srv/invguard.yaml")
    monkeypatch.setenv("INVGUARD_STORAGE", "redis://cache:6379/0")
    monkeypatch.setenv("INVGUARD_ADMIN_KEYS", json.dumps([{"id": "ops", "sha256": "ab" * 32}]))
    settings = environment_settings()
    assert Path("/srv/invguard.yaml") == settings.policy
    assert "redis://cache:6379/0" == settings.storage
    assert [("ops", "ab" * 32, "admin")] == [(k.id, k.sha256, k.tier) for k in settings.admin_keys]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{nope", "variable INVGUARD_ADMIN_KEYS: not a JSON list of keys"),
        ('[{"id": "ops"}]', "INVGUARD_ADMIN_KEYS.0.sha256: Field required"),
        (
            '[{"id": "ops", "sha256": "xyz"}]',
            "INVGUARD_ADMIN_KEYS.0.sha256: must be a 64-character",
        ),
        ('{"id": "ops"}', "INVGUARD_ADMIN_KEYS: Input should be a valid"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    """A bad value is a PolicyError at startup that names the variable and the problem."""
    monkeypatch.setenv("INVGUARD_ADMIN_KEYS", value)
    with pytest.raises(PolicyError) as refused:
        environment_settings()
    assert expected in str(refused.value)


def test_the_key_variable_is_the_one_the_policy_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """keys_from.env may name any variable; its bad entries are named with it."""
    entry = {"id": "app", "sha256": hash_key("k"), "tier": "public"}
    monkeypatch.setenv("MY_KEYS", json.dumps([entry]))
    assert [KeyEntry(**entry)] == keys_from_environment("MY_KEYS")
    assert [] == keys_from_environment("NOT_SET_ANYWHERE")
    monkeypatch.setenv("MY_KEYS", json.dumps([{**entry, "id": "two words"}]))
    with pytest.raises(PolicyError, match=r"MY_KEYS\.0\.id: must be 1-128 characters"):
        keys_from_environment("MY_KEYS")


def test_storage_override(monkeypatch: pytest.MonkeyPatch, tier_keys: dict[str, str]) -> None:
    """INVGUARD_STORAGE replaces the policy's URI; unset, the policy's stands."""
    policy = Policy.model_validate(policy_dict(tier_keys, storage="memory://"))
    assert "memory://" == storage_uri(policy)
    monkeypatch.setenv("INVGUARD_STORAGE", "redis://cache:6379/1")
    assert "redis://cache:6379/1" == storage_uri(policy)


def test_environment_false_reads_no_variable(
    monkeypatch: pytest.MonkeyPatch, tier_keys: dict[str, str]
) -> None:
    """What a file alone holds can be checked whatever the environment says."""
    policy = policy_from_mapping(policy_dict(tier_keys, keys_from={"env": "INVGUARD_KEYS"}))
    monkeypatch.setenv("INVGUARD_KEYS", "{broken")
    monkeypatch.setenv("INVGUARD_ADMIN_KEYS", "{broken")
    assert 3 == len(load_keys(policy, environment=False))
    assert [] == load_admin_keys(policy, environment=False)
    with pytest.raises(PolicyError, match="variable INVGUARD_KEYS: not a JSON list of keys"):
        load_keys(policy)


def test_one_uniqueness_rule_for_every_key_list(
    monkeypatch: pytest.MonkeyPatch, tier_keys: dict[str, str]
) -> None:
    """The same id or the same key twice is refused in the policy, across sources, and
    among admin keys, with the same words."""
    a = {"id": "a", "sha256": hash_key("x"), "tier": "public"}
    assert key_clash([KeyEntry(**a)]) is None
    assert "key 'a': the id is used by two keys" == key_clash(
        [KeyEntry(**a), KeyEntry(**{**a, "sha256": hash_key("y")})]
    )
    assert "key 'b': the same key is listed twice" == key_clash(
        [KeyEntry(**a), KeyEntry(**{**a, "id": "b"})]
    )
    with pytest.raises(PolicyError, match="admin_keys: key 'ops': the id is used by two keys"):
        policy_from_mapping(
            policy_dict(
                tier_keys,
                admin_keys=[{"id": "ops", "sha256": hash_key(s)} for s in ("1", "2")],
            )
        )
    policy = policy_from_mapping(
        policy_dict(tier_keys, admin_keys=[{"id": "ops", "sha256": hash_key("1")}])
    )
    monkeypatch.setenv("INVGUARD_ADMIN_KEYS", json.dumps([{"id": "ops2", "sha256": hash_key("1")}]))
    with pytest.raises(PolicyError, match="admin keys: key 'ops2': the same key is listed twice"):
        load_admin_keys(policy)
