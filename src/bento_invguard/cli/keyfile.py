"""Key files: YAML lists of key digests that keygen and init write and policies read."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from ..errors import PolicyError
from ..keys import generate_key, hash_key
from ..policy import KeyEntry
from ..policy.loading import format_validation_error, read_document
from ..policy.model import AdminKey
from .errors import CliError

_ENTRIES = TypeAdapter(list[KeyEntry])
_ADMIN_ENTRIES = TypeAdapter(list[AdminKey])

#: What keygen and init call an admin key's tier: it calls the admin endpoints only.
ADMIN = "admin"

KEY_FILE_HEADER = (
    "# API keys, stored as SHA-256 digests only: the keys themselves are never written.\n"
    "# Add one with: invguard keygen --tier <tier> --id <name> --keys-file <this file>\n"
    "# admin_keys may call /invguard/admin/blocks (list and clear monitor blocks) only;\n"
    "# add one with: invguard keygen --admin --id <name> --keys-file <this file>\n"
)


def read_key_file(path: Path) -> list[KeyEntry]:
    """The entries of a key file; an empty list when it does not exist yet."""
    document = _read_document(path)
    entries = document.get("keys") if isinstance(document, Mapping) else document
    try:
        return _ENTRIES.validate_python(entries or [])
    except ValidationError as exc:
        raise CliError(format_validation_error(exc, f"key file {path}")) from None


def read_admin_keys(path: Path) -> list[AdminKey]:
    """The ``admin_keys`` section of a key file (keys for /invguard/admin/blocks)."""
    document = _read_document(path)
    admin = document.get("admin_keys") if isinstance(document, Mapping) else None
    try:
        return _ADMIN_ENTRIES.validate_python(admin or [])
    except ValidationError as exc:
        raise CliError(format_validation_error(exc, f"key file {path}, admin_keys")) from None


def _read_document(path: Path) -> object:
    """A key file's YAML or JSON; None when it does not exist yet."""
    if not path.exists():
        return None
    try:
        return read_document(path)
    except PolicyError as exc:
        raise CliError(str(exc)) from None


def write_key_file(
    path: Path, entries: Iterable[KeyEntry], admin: Iterable[AdminKey] | None = None
) -> None:
    """Write ``entries`` (and ``admin`` keys; None keeps the file's) atomically,
    keeping the comment lines at the top of the file."""
    header = _leading_comments(path) or KEY_FILE_HEADER
    admin_keys = read_admin_keys(path) if admin is None else list(admin)
    document: dict[str, object] = {"keys": [e.model_dump() for e in entries]}
    if admin_keys:
        document["admin_keys"] = [{"id": k.id, "sha256": k.sha256} for k in admin_keys]
    body = yaml.safe_dump(document, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(header + body)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_admin_key(key_id: str) -> tuple[str, AdminKey]:
    """A fresh raw admin key and the entry that stores its digest."""
    key, entry = new_key(key_id, ADMIN)
    return key, AdminKey(id=entry.id, sha256=entry.sha256)


def new_key(key_id: str, tier: str) -> tuple[str, KeyEntry]:
    """A fresh raw key and the entry that stores its digest."""
    key = generate_key()
    try:
        entry = KeyEntry(id=key_id, sha256=hash_key(key), tier=tier)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        raise CliError(
            "; ".join(
                f"--{e['loc'][0]}: {e['msg'].removeprefix('Value error, ')}" for e in problems
            )
        ) from None
    return key, entry


def _leading_comments(path: Path) -> str:
    if not path.exists():
        return ""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line if line.endswith("\n") else line + "\n")
    return "".join(lines)
