"""load_attached_policy(): the policy stored in a model, after checking its digests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import GuardConfigError, PolicyError
from ..policy import Policy, policy_from_file
from .manifest import ATTACH_DIR, METADATA_KEY, POLICY_FILE, Manifest, sha256_bytes
from .models import ModelRef, model_name, stored_model


def load_attached_policy(model: ModelRef) -> Policy:
    """The policy attached to ``model`` with :func:`attach`, relative paths resolved there.

    Refuses with a :class:`GuardConfigError` naming the model and the file
    when nothing is attached, when a file's SHA-256 differs from the one in
    ``invguard/manifest.json``, or when the manifest's own digest differs from
    the one in the model's metadata (recorded when attached at creation).

    >>> policy = load_attached_policy("fraud_clf:latest")  # doctest: +SKIP
    """
    target = stored_model(model)
    where = model_name(target)
    folder = Path(target.path) / ATTACH_DIR
    manifest, raw = Manifest.read(folder, where)
    _check_metadata(target.info.metadata, sha256_bytes(raw), where)
    manifest.verify(folder, where)
    try:
        return policy_from_file(folder / POLICY_FILE)
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def _check_metadata(metadata: Mapping[str, Any], manifest_sha256: str, where: str) -> None:
    """Compare with the digest recorded in model.yaml, when the model was created with one."""
    recorded = metadata.get(METADATA_KEY)
    if recorded is None:
        return
    expected = recorded.get("manifest_sha256") if isinstance(recorded, Mapping) else None
    if expected != manifest_sha256:
        raise GuardConfigError(
            f"{where}: {ATTACH_DIR}/manifest.json does not match the SHA-256 recorded in the "
            f"model's metadata (model.yaml {METADATA_KEY}.manifest_sha256 = {expected!r}, "
            f"file {manifest_sha256[:16]}...): the attached files were changed after the "
            "model was saved"
        )
