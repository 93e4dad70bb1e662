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
from .errors import CliError

_ENTRIES = TypeAdapter(list[KeyEntry])

KEY_FILE_HEADER = (
    "# API keys, stored as SHA-256 digests only: the keys themselves are never written.\n"
    "# Add one with: invguard keygen --tier <tier> --id <name> --keys-file <this file>\n"
)


def read_key_file(path: Path) -> list[KeyEntry]:
    """The entries of a key file; an empty list when it does not exist yet."""
    if not path.exists():
        return []
    try:
        data = read_document(path)
    except PolicyError as exc:
        raise CliError(str(exc)) from None
    if isinstance(data, Mapping):
        data = data.get("keys")
    try:
        return _ENTRIES.validate_python(data or [])
    except ValidationError as exc:
        raise CliError(format_validation_error(exc, f"key file {path}")) from None


def write_key_file(path: Path, entries: Iterable[KeyEntry]) -> None:
    """Write ``entries`` atomically, keeping the comment lines at the top of the file."""
    header = _leading_comments(path) or KEY_FILE_HEADER
    body = yaml.safe_dump({"keys": [e.model_dump() for e in entries]}, sort_keys=False)
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
