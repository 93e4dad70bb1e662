"""attach() and load_attached_policy(): the policy travels in the model, digests checked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
import yaml

import bento_invguard
from bento_invguard import (
    GuardConfigError,
    Policy,
    PolicyError,
    Profile,
    attach,
    load_attached_policy,
)

from .conftest import ROWS, save_model

pytestmark = pytest.mark.usefixtures("model_store")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_attach_while_creating_records_digests_in_metadata(policy_file: Path) -> None:
    """Inside models.create: files in invguard/, digests and version in model.yaml."""
    with bentoml.models.create("clf") as model:
        np.savez(model.path_of("weights.npz"), w=np.ones(4))
        attachment = attach(model, policy_file)
    assert attachment.in_metadata
    stored = bentoml.models.get(model.tag)
    folder = Path(stored.path) / "invguard"
    assert {"policy.yaml", "profile.json", "manifest.json"} == {p.name for p in folder.iterdir()}
    meta = stored.info.metadata["invguard"]
    assert bento_invguard.__version__ == meta["library_version"]
    assert sha256(folder / "manifest.json") == meta["manifest_sha256"]
    assert sha256(folder / "policy.yaml") == meta["policy_yaml_sha256"]
    assert sha256(folder / "profile.json") == meta["profile_json_sha256"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert str(model.tag) == manifest["model"]
    assert {
        "policy.yaml": sha256(folder / "policy.yaml"),
        "profile.json": sha256(folder / "profile.json"),
    } == manifest["files"]


def test_attached_policy_loads_with_its_profile(policy_file: Path) -> None:
    """The loaded policy equals the original; its profile resolves to the stored copy."""
    model = save_model()
    attach(model.tag, policy_file)
    loaded = load_attached_policy(f"{model.tag.name}:latest")
    original = Policy.from_file(policy_file)
    assert original.tiers == loaded.tiers
    assert original.input.model_copy(update={"profile": None}) == loaded.input.model_copy(
        update={"profile": None}
    )
    profile_path = loaded.resolve(loaded.input.profile)  # type: ignore[arg-type]
    assert Path(model.path) / "invguard" / "profile.json" == profile_path
    assert Profile.load(policy_file.parent / "train.profile.json") == Profile.load(profile_path)


def test_attach_to_a_saved_model_uses_the_manifest_only(policy_file: Path) -> None:
    """BentoML cannot change a saved model's metadata: the digests live in the manifest."""
    model = save_model()
    attachment = attach(bentoml.models.BentoModel(str(model.tag)), policy_file)
    assert not attachment.in_metadata
    assert "invguard" not in bentoml.models.get(model.tag).info.metadata
    assert sha256(Path(model.path) / "invguard" / "manifest.json") == attachment.manifest_sha256


@pytest.mark.parametrize("ref", ["tag", "latest", "bento_model", "model"])
def test_every_kind_of_model_reference_loads(policy_file: Path, ref: str) -> None:
    """A tag, name:latest, a BentoModel and a stored Model all find the attached policy."""
    model = save_model()
    attach(model, policy_file)
    refs: dict[str, Any] = {
        "tag": str(model.tag),
        "latest": "clf:latest",
        "bento_model": bentoml.models.BentoModel("clf:latest"),
        "model": model,
    }
    assert ["public", "trusted"] == list(load_attached_policy(refs[ref]).tiers)


def test_relative_key_file_is_not_stored(policy_file: Path) -> None:
    """Keys are not copied: a relative key file is dropped, with a note; env keys remain."""
    model = save_model()
    attachment = attach(model, policy_file)
    stored_text = (Path(model.path) / "invguard" / "policy.yaml").read_text()
    assert "keys.yaml" not in stored_text
    assert any("keys.yaml" in note and "INVGUARD_KEYS" in note for note in attachment.notes)
    loaded = load_attached_policy(model)
    assert loaded.keys_from.file is None
    assert "INVGUARD_KEYS" == loaded.keys_from.env


def test_absolute_key_file_is_kept(policy_file: Path, tmp_path: Path) -> None:
    """An absolute key file (a secret mounted at serve time) stays in the stored policy."""
    mounted = tmp_path / "run" / "secrets" / "keys.yaml"
    data = yaml.safe_load(policy_file.read_text())
    data["keys_from"] = {"file": str(mounted), "required": False}
    policy_file.write_text(yaml.safe_dump(data))
    model = save_model()
    attachment = attach(model, policy_file)
    assert () == attachment.notes
    assert mounted == load_attached_policy(model).keys_from.file


def test_attach_a_policy_object_and_a_profile_object(tmp_path: Path) -> None:
    """A Policy built in Python and a fitted Profile can be attached directly."""
    policy = Policy(tiers={"public": {"output": "label"}}, input={"shape": [4]})
    profile = Profile.fit(ROWS, margin=0.0)
    model = save_model()
    attach(model, policy, profile)
    loaded = load_attached_policy(model)
    assert "profile.json" == str(loaded.input.profile)
    assert profile == Profile.load(loaded.resolve(loaded.input.profile))  # type: ignore[arg-type]


def test_attach_without_a_profile(tmp_path: Path) -> None:
    """No profile anywhere: only the policy and the manifest are stored."""
    model = save_model()
    attach(model, Policy(tiers={"public": {}}))
    folder = Path(model.path) / "invguard"
    assert {"policy.yaml", "manifest.json"} == {p.name for p in folder.iterdir()}
    assert load_attached_policy(model).input.profile is None


def test_attach_refuses_a_profile_of_another_shape(policy_file: Path) -> None:
    """A profile that does not fit input.shape is refused before anything is written."""
    model = save_model()
    with pytest.raises(PolicyError, match="input.profile"):
        attach(model, policy_file, Profile.fit(np.ones((5, 7))))
    assert not (Path(model.path) / "invguard").exists()


def test_attach_refuses_an_invalid_policy(tmp_path: Path) -> None:
    """A policy file that does not validate is refused with its field named."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: {t: {output: all}}\n")
    model = save_model()
    with pytest.raises(PolicyError, match="tiers.t.output"):
        attach(model, bad)
    assert not (Path(model.path) / "invguard").exists()


def test_reattach_needs_replace(policy_file: Path) -> None:
    """A saved model's attached policy is replaced only on request."""
    model = save_model()
    attach(model, policy_file)
    with pytest.raises(GuardConfigError, match="replace=True"):
        attach(model, Policy(tiers={"other": {}}))
    assert ["public", "trusted"] == list(load_attached_policy(model).tiers)
    attach(model, Policy(tiers={"other": {}}), replace=True)
    assert ["other"] == list(load_attached_policy(model).tiers)
    assert not (Path(model.path) / "invguard" / "profile.json").exists()


def test_metadata_recorded_policy_cannot_be_replaced(policy_file: Path) -> None:
    """Once the digest is in model.yaml, a new policy needs a new model version."""
    with bentoml.models.create("clf") as model:
        attach(model, policy_file)
    with pytest.raises(GuardConfigError, match="new model version"):
        attach(bentoml.models.get(model.tag), Policy(tiers={"x": {}}), replace=True)


@pytest.mark.parametrize("name", ["policy.yaml", "profile.json"])
def test_an_edited_file_is_refused(policy_file: Path, name: str) -> None:
    """Any byte changed after attach(): refused, naming the model and the file."""
    model = save_model()
    attach(model, policy_file)
    path = Path(model.path) / "invguard" / name
    path.write_bytes(path.read_bytes() + b"\n")  # still valid, means the same: refused all the same
    with pytest.raises(GuardConfigError) as caught:
        load_attached_policy(model)
    message = str(caught.value)
    assert str(model.tag) in message
    assert f"invguard/{name} does not match" in message


def test_a_removed_file_is_refused(policy_file: Path) -> None:
    """A file listed in the manifest must be there."""
    model = save_model()
    attach(model, policy_file)
    (Path(model.path) / "invguard" / "profile.json").unlink()
    with pytest.raises(
        GuardConfigError, match="profile.json is listed in manifest.json but missing"
    ):
        load_attached_policy(model)


def test_a_rewritten_manifest_is_caught_by_the_metadata(policy_file: Path) -> None:
    """Edit the policy and its manifest consistently: model.yaml still holds the old digest."""
    with bentoml.models.create("clf") as model:
        attach(model, policy_file)
    folder = Path(bentoml.models.get(model.tag).path) / "invguard"
    policy = folder / "policy.yaml"
    policy.write_text(policy.read_text().replace("output: label", "output: full"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["policy.yaml"] = sha256(policy)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GuardConfigError, match="model's metadata") as caught:
        load_attached_policy(model.tag)
    assert str(model.tag) in str(caught.value)


def test_manifest_paths_stay_inside_the_folder(policy_file: Path) -> None:
    """A manifest that names a file outside invguard/ is refused, not followed."""
    model = save_model()
    attach(model, policy_file)
    path = Path(model.path) / "invguard" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["../model.yaml"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(GuardConfigError, match="unexpected file '../model.yaml'"):
        load_attached_policy(model)


def test_nothing_attached() -> None:
    """A model without an attached policy: the message says how to attach one."""
    model = save_model()
    with pytest.raises(GuardConfigError, match=r"no invguard policy is attached.*attach\("):
        load_attached_policy(model)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("absent:latest", "not in the local model store"),
        ("Bad Tag!", "Bad Tag!"),
        (42, "got int"),
    ],
)
def test_bad_model_references(ref: Any, message: str) -> None:
    """Unknown models, invalid tags and other objects are GuardConfigErrors."""
    with pytest.raises(GuardConfigError, match=message):
        load_attached_policy(ref)


def test_nothing_is_pickled(policy_file: Path) -> None:
    """The model directory holds YAML, JSON and the user's own files: no pickle."""
    with bentoml.models.create("clf") as model:
        np.savez(model.path_of("weights.npz"), w=np.ones(4))
        attach(model, policy_file)
    names = {p.name for p in Path(bentoml.models.get(model.tag).path).rglob("*")}
    assert {
        "model.yaml",
        "weights.npz",
        "invguard",
        "policy.yaml",
        "profile.json",
        "manifest.json",
    } == names


def test_attach_after_the_create_block_writes_to_the_stored_model(policy_file: Path) -> None:
    """The object that ``models.create`` yielded, used after its block: its temporary
    folder has moved into the store, so the files go to the stored model, and
    ``policy_from`` loads them."""
    with bentoml.models.create("clf") as model:
        np.savez(model.path_of("weights.npz"), w=np.ones(4))
    attachment = attach(model, policy_file)
    stored = bentoml.models.get(model.tag)
    folder = Path(stored.path) / "invguard"
    assert folder == attachment.folder
    assert {"policy.yaml", "profile.json", "manifest.json"} == {p.name for p in folder.iterdir()}
    assert not attachment.in_metadata
    assert sha256(folder / "manifest.json") == attachment.manifest_sha256
    assert Policy.from_file(policy_file).tiers == load_attached_policy("clf:latest").tiers


def test_attach_after_the_create_block_of_a_deleted_model_is_refused(policy_file: Path) -> None:
    """A created model that is no longer in the store: refused, nothing reported written."""
    with bentoml.models.create("clf") as model:
        np.savez(model.path_of("weights.npz"), w=np.ones(4))
    bentoml.models.delete(model.tag)
    with pytest.raises(GuardConfigError, match="not in the local model store"):
        attach(model, policy_file)
