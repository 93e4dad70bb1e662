"""The manifest of an attached policy: which files, their SHA-256 digests, which version.

The manifest sits beside the files it lists, in the model's ``invguard/``
folder. It makes an edit of an attached file visible (the digest no longer
matches); it is not a signature. A model created with the policy attached also
records the manifest's digest in its ``model.yaml`` metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import GuardConfigError

FORMAT: Final = "bento_invguard.attachment/1"
#: Folder inside the model's directory that holds everything attached.
ATTACH_DIR = "invguard"
POLICY_FILE = "policy.yaml"
PROFILE_FILE = "profile.json"
MANIFEST_FILE = "manifest.json"
#: Key of the entry in the model's custom metadata (model.yaml).
METADATA_KEY = "invguard"

_ATTACHABLE = frozenset({POLICY_FILE, PROFILE_FILE})


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``.

    >>> sha256_bytes(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


class Manifest(BaseModel):
    """``invguard/manifest.json``: the attached files and their digests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["bento_invguard.attachment/1"] = FORMAT
    library_version: str
    model: str = Field(description="Tag of the model the files were attached to.")
    files: dict[str, str] = Field(description="File name in invguard/ -> hex SHA-256.")

    @field_validator("files")
    @classmethod
    def _known_files(cls, value: dict[str, str]) -> dict[str, str]:
        # Only plain names that attach() writes: never a path out of the folder.
        for name in value:
            if name not in _ATTACHABLE:
                raise ValueError(f"unexpected file {name!r}")
        if POLICY_FILE not in value:
            raise ValueError(f"{POLICY_FILE} is not listed")
        return value

    def to_bytes(self) -> bytes:
        """The exact bytes written to disk (their digest goes into model.yaml)."""
        text = json.dumps(self.model_dump(), indent=1, sort_keys=True)
        return (text + "\n").encode("utf-8")

    @classmethod
    def read(cls, folder: Path, where: str) -> tuple[Manifest, bytes]:
        """The manifest in ``folder`` and its raw bytes; ``where`` names the model in errors."""
        path = folder / MANIFEST_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise GuardConfigError(
                f"{where}: no invguard policy is attached ({ATTACH_DIR}/{MANIFEST_FILE} is "
                f"missing); attach one with bento_invguard.attach(model, policy)"
            ) from None
        except OSError as exc:
            raise GuardConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
        try:
            return cls.model_validate_json(raw), raw
        except ValidationError as exc:
            from ..policy.loading import format_validation_error

            raise GuardConfigError(
                format_validation_error(exc, f"{where}: {ATTACH_DIR}/{MANIFEST_FILE}")
            ) from None

    def verify(self, folder: Path, where: str) -> None:
        """Refuse (GuardConfigError) when a listed file is missing or its digest differs."""
        for name, recorded in sorted(self.files.items()):
            path = folder / name
            try:
                actual = sha256_file(path)
            except FileNotFoundError:
                raise GuardConfigError(
                    f"{where}: {ATTACH_DIR}/{name} is listed in {MANIFEST_FILE} but missing"
                ) from None
            if actual != recorded:
                raise GuardConfigError(
                    f"{where}: {ATTACH_DIR}/{name} does not match the SHA-256 recorded in "
                    f"{MANIFEST_FILE} (recorded {recorded[:16]}..., file {actual[:16]}...): "
                    "it was changed after attach(); attach the policy to a new model version"
                )
