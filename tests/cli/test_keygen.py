"""`invguard keygen`: a new key, shown once, its digest appended to the key file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bento_invguard import Policy, hash_key
from bento_invguard.keys import KeyRing
from bento_invguard.policy import load_keys

from .conftest import Run


def entries(path: Path) -> list[dict[str, str]]:
    return list(yaml.safe_load(path.read_text())["keys"])


def test_keygen_appends_a_key_that_authenticates(run: Run, project: Path) -> None:
    """The printed key maps to the new principal and tier; existing keys stay."""
    keys_file = project / "keys.yaml"
    before = entries(keys_file)
    result = run(
        "keygen", "--tier", "partner", "--id", "acme", "--policy", project / "invguard.yaml"
    )
    assert 0 == result.code, result.err
    key = result.out.strip()
    assert 1 == len(result.out.splitlines())
    assert "acme" in result.err and "shown once" in result.err

    after = entries(keys_file)
    assert before == after[:-1]
    assert {"id": "acme", "sha256": hash_key(key), "tier": "partner"} == after[-1]
    policy = Policy.from_file(project / "invguard.yaml")
    principal = KeyRing(
        (k.id, k.sha256, k.tier) for k in load_keys(policy, environment=False)
    ).lookup(key)
    assert principal is not None
    assert ("acme", "partner") == (principal.id, principal.tier)


def test_keygen_keeps_the_comment_header(run: Run, project: Path) -> None:
    """Comment lines at the top of the key file survive the rewrite."""
    keys_file = project / "keys.yaml"
    keys_file.write_text("# owned by the ML platform team\n" + keys_file.read_text())
    assert 0 == run("keygen", "--tier", "public", "--id", "x", "--keys-file", keys_file).code
    assert keys_file.read_text().startswith("# owned by the ML platform team\n")


def test_keygen_creates_keys_yaml_in_the_current_folder(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --keys-file or --policy, keys.yaml in the current folder is created."""
    monkeypatch.chdir(tmp_path)
    result = run("keygen", "--tier", "gold", "--id", "first")
    assert 0 == result.code, result.err
    assert [{"id": "first", "sha256": hash_key(result.out.strip()), "tier": "gold"}] == entries(
        tmp_path / "keys.yaml"
    )


def test_keygen_uses_the_policys_key_file(run: Run, project: Path, tmp_path: Path) -> None:
    """With --policy and no --keys-file, the key goes to the policy's keys_from.file."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run(
        "keygen", "--tier", "trusted", "--id", "ops", "--policy", project / "invguard.yaml"
    )
    assert 0 == result.code
    assert "ops" == entries(project / "keys.yaml")[-1]["id"]
    assert not (elsewhere / "keys.yaml").exists()


def test_keygen_refuses_an_unknown_tier(run: Run, project: Path) -> None:
    """The tier must exist in the policy: exit 2, the tiers listed, nothing written."""
    before = (project / "keys.yaml").read_text()
    result = run("keygen", "--tier", "gold", "--id", "x", "--policy", project / "invguard.yaml")
    assert 2 == result.code
    assert "no tier named 'gold'" in result.err
    assert "public, partner, trusted" in result.err
    assert "" == result.out
    assert before == (project / "keys.yaml").read_text()


def test_keygen_refuses_a_duplicate_id(run: Run, project: Path) -> None:
    """An id already in the key file is refused and no key is printed."""
    result = run(
        "keygen", "--tier", "public", "--id", "public-1", "--keys-file", project / "keys.yaml"
    )
    assert 2 == result.code
    assert "'public-1' already exists" in result.err
    assert "" == result.out


def test_keygen_refuses_an_id_inline_in_the_policy(run: Run, tmp_path: Path) -> None:
    """Ids of keys written inline in the policy count too."""
    policy = tmp_path / "p.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "keys": [{"id": "inline", "sha256": hash_key("k"), "tier": "t"}],
                "tiers": {"t": {}},
            }
        )
    )
    result = run("keygen", "--tier", "t", "--id", "inline", "--policy", policy)
    assert 2 == result.code
    assert "'inline' is already in" in result.err


def test_keygen_refuses_a_bad_id(run: Run, tmp_path: Path) -> None:
    """Ids are plain names; the message names the --id option."""
    result = run("keygen", "--tier", "t", "--id", "has space", "--keys-file", tmp_path / "k.yaml")
    assert 2 == result.code
    assert "--id:" in result.err
    assert not (tmp_path / "k.yaml").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("keys: [{id: a, sha256: nothex, tier: t}]", "0.sha256: must be a 64-character"),
        ("keys: [unclosed", "not valid"),
        ("keys: {id: a}", "key file"),
    ],
)
def test_keygen_refuses_a_bad_key_file(
    run: Run, tmp_path: Path, content: str, message: str
) -> None:
    """A key file that does not parse or validate is reported, and left as it was."""
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(content)
    result = run("keygen", "--tier", "t", "--id", "x", "--keys-file", keys_file)
    assert 2 == result.code
    assert message in result.err
    assert content == keys_file.read_text()


def test_keygen_refuses_a_bad_policy(run: Run, tmp_path: Path) -> None:
    """--policy must load; the error names the option and the field."""
    policy = tmp_path / "p.yaml"
    policy.write_text("tiers: {t: {output: everything}}\n")
    result = run("keygen", "--tier", "t", "--id", "x", "--policy", policy)
    assert 2 == result.code
    assert "--policy" in result.err
    assert "tiers.t.output" in result.err


def test_keygen_admin_adds_an_admin_key_and_keeps_the_tier_keys(run: Run, project: Path) -> None:
    """--admin: the digest goes under admin_keys, where the admin endpoints read it; the
    tier keys and the admin key init made stay."""
    from bento_invguard.admin.endpoints import load_admin_keys

    keys_file = project / "keys.yaml"
    before = entries(keys_file)
    result = run("keygen", "--admin", "--id", "ops", "--policy", project / "invguard.yaml")
    assert 0 == result.code, result.err
    key = result.out.strip()
    assert before == entries(keys_file)
    policy = Policy.from_file(project / "invguard.yaml")
    admin = load_admin_keys(policy, environment=False)
    assert ["admin-1", "ops"] == [k.id for k in admin]
    assert hash_key(key) == admin[-1].sha256
    again = run("keygen", "--admin", "--id", "ops", "--policy", project / "invguard.yaml")
    assert 0 != again.code and "already exists" in again.err
