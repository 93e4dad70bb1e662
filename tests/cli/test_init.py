"""`invguard init`: a starter policy that loads, and one key per tier shown once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bento_invguard import Policy, hash_key
from bento_invguard.keys import KeyRing
from bento_invguard.policy import load_keys

from .conftest import Run

KEY_LINE = re.compile(r"^\s+(\w+)\s+(\S+)\s+(ig_\S+)$", re.MULTILINE)


def printed_keys(out: str) -> dict[str, tuple[str, str]]:
    """tier -> (id, raw key) from init's output."""
    return {tier: (key_id, key) for tier, key_id, key in KEY_LINE.findall(out)}


def test_init_writes_a_policy_and_keys_that_load(run: Run, tmp_path: Path) -> None:
    """The starter policy validates, has three tiers and one key per tier, as digests."""
    folder = tmp_path / "new" / "project"
    result = run("init", folder)
    assert 0 == result.code, result.err

    policy = Policy.from_file(folder / "invguard.yaml")
    assert ["public", "partner", "trusted"] == list(policy.tiers)
    assert "label" == policy.tiers["public"].output
    assert "full" == policy.tiers["trusted"].output
    assert (folder / "keys.yaml").resolve() == policy.resolve(policy.keys_from.file)  # type: ignore[arg-type]

    keys = printed_keys(result.out)
    assert {"public", "partner", "trusted"} == set(keys)
    ring = KeyRing((k.id, k.sha256, k.tier) for k in load_keys(policy, environment=False))
    for tier, (key_id, key) in keys.items():
        principal = ring.lookup(key)
        assert principal is not None and (key_id, tier) == (principal.id, principal.tier)


def test_init_never_writes_a_raw_key(run: Run, tmp_path: Path) -> None:
    """Only digests reach the disk; each raw key appears once, on stdout."""
    result = run("init", tmp_path)
    written = (tmp_path / "invguard.yaml").read_text() + (tmp_path / "keys.yaml").read_text()
    for _, key in printed_keys(result.out).values():
        assert key not in written
        assert hash_key(key) in written
        assert 1 == result.out.count(key)


def test_init_policy_is_commented(run: Run, tmp_path: Path) -> None:
    """The starter policy explains itself: comments on keys, tiers and input checks."""
    run("init", tmp_path)
    text = (tmp_path / "invguard.yaml").read_text()
    assert text.count("#") >= 10
    assert "invguard keygen" in text
    assert "invguard profile fit" in text


def test_init_defaults_to_the_current_folder(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without DIR, init writes into the current folder."""
    monkeypatch.chdir(tmp_path)
    assert 0 == run("init").code
    assert (tmp_path / "invguard.yaml").is_file()
    assert (tmp_path / "keys.yaml").is_file()


@pytest.mark.parametrize("existing", ["invguard.yaml", "keys.yaml"])
def test_init_refuses_to_overwrite(run: Run, tmp_path: Path, existing: str) -> None:
    """An existing policy or key file is left alone: exit 2, --force named."""
    (tmp_path / existing).write_text("mine\n")
    result = run("init", tmp_path)
    assert 2 == result.code
    assert "--force" in result.err
    assert existing in result.err
    assert "mine\n" == (tmp_path / existing).read_text()
    assert "ig_" not in result.out


def test_init_force_overwrites_with_new_keys(run: Run, project: Path) -> None:
    """--force writes new files; the old keys no longer authenticate."""
    old = (project / "keys.yaml").read_text()
    result = run("init", project, "--force")
    assert 0 == result.code
    assert old != (project / "keys.yaml").read_text()
    Policy.from_file(project / "invguard.yaml")


def test_init_refuses_a_file_as_folder(run: Run, tmp_path: Path) -> None:
    """DIR must be a folder."""
    target = tmp_path / "file"
    target.write_text("x")
    result = run("init", target)
    assert 2 == result.code
    assert "not a folder" in result.err


ADMIN_LINE = re.compile(r"^\s+admin\s+(\S+)\s+(ig_\S+)\s+\(/invguard/admin/blocks only\)$", re.M)


def test_init_makes_an_admin_key_that_the_admin_endpoints_accept(run: Run, tmp_path: Path) -> None:
    """An admin key is printed once and stored as a digest under admin_keys in keys.yaml,
    where the admin endpoints look for it: blocks can be cleared from the start."""
    from bento_invguard.admin.endpoints import load_admin_keys

    result = run("init", tmp_path)
    assert 0 == result.code, result.err
    found = ADMIN_LINE.search(result.out)
    assert found is not None, result.out
    key_id, key = found.groups()
    policy = Policy.from_file(tmp_path / "invguard.yaml")
    assert [(key_id, hash_key(key))] == [
        (k.id, k.sha256) for k in load_admin_keys(policy, environment=False)
    ]
    assert key not in (tmp_path / "keys.yaml").read_text()


def test_the_demo_setup_makes_an_admin_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make demo`` (examples/digits/setup_demo.py) writes an admin key digest beside
    the tier keys and prints the key and the curl line that lists blocks."""
    from bento_invguard.admin.endpoints import load_admin_keys

    from ..conftest import digits_module

    setup = digits_module("setup_demo")
    monkeypatch.setattr(setup, "train_main", lambda: None)
    monkeypatch.setattr(setup, "RAW_KEYS", tmp_path / ".demo-keys")
    monkeypatch.setattr(setup, "KEY_FILE", tmp_path / "keys.yaml")
    (tmp_path / "invguard.yaml").write_text(
        "keys_from: {file: keys.yaml}\ntiers: {public: {}, partner: {}, trusted: {}}\n"
    )
    setup.main()  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    admin_key = setup.demo_keys()["admin"]  # type: ignore[attr-defined]
    assert f"/invguard/admin/blocks -H 'Authorization: Bearer {admin_key}'" in out
    policy = Policy.from_file(tmp_path / "invguard.yaml")
    assert [hash_key(admin_key)] == [k.sha256 for k in load_admin_keys(policy, environment=False)]
    assert 3 == len(load_keys(policy, environment=False))
