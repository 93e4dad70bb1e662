"""attach(): store a policy and its reference profile inside a BentoML model.

The files travel with the model: into every bento that uses it, through
``bentoml export`` / ``import``, into the container. Keys never do; they come
from the environment (``INVGUARD_KEYS``) or a key file mounted at serve time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import GuardConfigError
from ..policy import Policy
from ..reference import Profile
from ..validation import InputValidator
from .load import load_attached_policy
from .manifest import (
    ATTACH_DIR,
    MANIFEST_FILE,
    METADATA_KEY,
    POLICY_FILE,
    PROFILE_FILE,
    Manifest,
    sha256_bytes,
)
from .models import ModelRef, in_creation, model_name, stored_model


@dataclass(frozen=True)
class Attachment:
    """What :func:`attach` wrote, and where the digests are recorded.

    ``folder`` is where the files were written: a temporary folder until
    ``bentoml.models.create()`` saves the model. ``in_metadata`` says whether
    the digests also went into the model's metadata (``model.yaml``).
    """

    model: str
    folder: Path
    digests: dict[str, str]
    manifest_sha256: str
    in_metadata: bool = False
    notes: tuple[str, ...] = field(default=())


def attach(
    model: ModelRef,
    policy: Policy | str | os.PathLike[str],
    profile: Profile | str | os.PathLike[str] | None = None,
    *,
    replace: bool = False,
) -> Attachment:
    """Store ``policy`` (and its reference profile) in ``model``'s directory.

    ``model`` is a tag, a ``bentoml.models.BentoModel`` or a bentoml Model.
    Inside ``with bentoml.models.create(...) as model:`` the digests also go
    into the model's custom metadata (``model.yaml``); a model already saved
    cannot have its metadata changed, so for it the digests are recorded in
    ``invguard/manifest.json`` only. ``profile`` defaults to the policy's
    ``input.profile``. Serve it with ``protect(policy_from=model)``.

    >>> with bentoml.models.create("clf") as model:         # doctest: +SKIP
    ...     np.savez(model.path_of("weights.npz"), w=w)
    ...     attach(model, "invguard.yaml")
    """
    target = stored_model(model)
    where = model_name(target)
    creating = in_creation(target)
    loaded = policy if isinstance(policy, Policy) else Policy.from_file(Path(policy))
    fitted = _profile_for(loaded, profile)
    if fitted is not None:
        InputValidator(loaded.input, fitted)  # refuses a profile of another shape
    document, notes = stored_document(loaded, has_profile=fitted is not None)

    files = {POLICY_FILE: _policy_text(document, str(target.tag))}
    if fitted is not None:
        files[PROFILE_FILE] = (fitted.model_dump_json(indent=1) + "\n").encode("utf-8")
    from .. import __version__

    manifest = Manifest(
        library_version=__version__,
        model=str(target.tag),
        files={name: sha256_bytes(data) for name, data in files.items()},
    )
    files[MANIFEST_FILE] = manifest.to_bytes()

    folder = Path(target.path) / ATTACH_DIR
    if not creating:
        _check_replaceable(target, folder, where, replace=replace)
    _write_folder(folder, files)
    manifest_sha256 = sha256_bytes(files[MANIFEST_FILE])
    if creating:
        target.info.metadata[METADATA_KEY] = {
            "library_version": __version__,
            "manifest_sha256": manifest_sha256,
            **{name.replace(".", "_") + "_sha256": d for name, d in manifest.files.items()},
        }
    load_attached_policy(target)  # what protect(policy_from=...) will do, now
    return Attachment(
        model=str(target.tag),
        folder=folder,
        digests=dict(manifest.files),
        manifest_sha256=manifest_sha256,
        in_metadata=creating,
        notes=tuple(notes),
    )


def stored_document(policy: Policy, *, has_profile: bool) -> tuple[dict[str, Any], list[str]]:
    """The policy as stored in the model: relative paths made to work from there.

    ``input.profile`` points at the stored ``profile.json``. A relative
    ``keys_from.file`` is dropped (the key file is not copied; keys come from
    ``keys_from.env`` at serve time); an absolute one, a mounted secret, stays.
    """
    data: dict[str, Any] = policy.model_dump(mode="json", exclude_unset=True)
    notes: list[str] = []
    inputs = data.setdefault("input", {})
    if has_profile:
        inputs["profile"] = PROFILE_FILE
    else:
        inputs.pop("profile", None)
    sources = data.get("keys_from", {})
    key_file = sources.get("file")
    if key_file is not None and not Path(key_file).is_absolute():
        del sources["file"]
        sources.pop("required", None)
        env = policy.keys_from.env
        notes.append(
            f"keys_from.file {key_file!r} is not stored with the model: keys come from "
            + (f"the environment variable {env}" if env else "the policy's inline digests")
            + " at serve time"
        )
    return data, notes


def _profile_for(
    policy: Policy, profile: Profile | str | os.PathLike[str] | None
) -> Profile | None:
    if isinstance(profile, Profile):
        return profile
    if profile is not None:
        return Profile.load(profile)
    if policy.input.profile is not None:
        return Profile.load(policy.resolve(policy.input.profile))
    return None


def _policy_text(document: dict[str, Any], tag: str) -> bytes:
    from .. import __version__

    header = (
        f"# bento_invguard policy attached to model {tag} by bento_invguard {__version__}.\n"
        f"# Do not edit: its SHA-256 is recorded in {MANIFEST_FILE} and checked at startup.\n"
    )
    return (header + yaml.safe_dump(document, sort_keys=False)).encode("utf-8")


def _check_replaceable(target: Any, folder: Path, where: str, *, replace: bool) -> None:
    if METADATA_KEY in target.info.metadata:
        raise GuardConfigError(
            f"{where}: its policy digest is recorded in model.yaml, which BentoML does not "
            "let change after the model is saved; attach the new policy to a new model version"
        )
    if folder.exists() and not replace:
        raise GuardConfigError(
            f"{where} already has an attached policy; pass replace=True to replace it"
        )


def _write_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Write all files into a fresh folder, then swap it in: never half a policy."""
    staging = Path(tempfile.mkdtemp(prefix=f".{ATTACH_DIR}-", dir=folder.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        staging.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
