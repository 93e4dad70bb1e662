"""Reading policies and key lists from files and the environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from ..errors import PolicyError
from .model import KeyEntry, Policy, key_clash
from .settings import keys_from_environment

_KEY_LIST = TypeAdapter(list[KeyEntry])


def format_validation_error(exc: ValidationError, where: str) -> str:
    """One line per problem, each naming the dotted field that is wrong."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
        msg = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}")
    return f"invalid {where}:\n" + "\n".join(lines)


def read_document(path: Path) -> Any:
    """Parse a YAML or JSON file (JSON is YAML, but its errors read better as JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: file not found") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None


def policy_from_mapping(
    data: Any, *, base_dir: Path | None = None, where: str = "policy"
) -> Policy:
    if not isinstance(data, Mapping):
        raise PolicyError(f"invalid {where}: expected a mapping at the top level")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(format_validation_error(exc, where)) from None
    if base_dir is not None:
        policy._base_dir = base_dir
    return policy


def policy_from_file(path: str | os.PathLike[str]) -> Policy:
    path = Path(path).resolve()
    data = read_document(path)
    return policy_from_mapping(data, base_dir=path.parent, where=f"policy {path}")


def load_keys(policy: Policy, *, environment: bool = True) -> list[KeyEntry]:
    """Every key of the policy: inline, from the key file, and (unless ``environment``
    is False) from the variable ``keys_from.env`` names."""
    entries = list(policy.keys)
    sources = policy.keys_from
    if sources.file is not None:
        path = policy.resolve(sources.file)
        if path.exists() or sources.required:
            entries += _parse_key_list(read_document(path), f"key file {path}")
    if sources.env and environment:
        entries += keys_from_environment(sources.env)
    for entry in entries:
        if entry.tier not in policy.tiers:
            raise PolicyError(f"key {entry.id!r}: no tier named {entry.tier!r} in the policy")
    clash = key_clash(entries)
    if clash is not None:
        raise PolicyError(clash)
    return entries


def _parse_key_list(data: Any, where: str) -> list[KeyEntry]:
    if isinstance(data, Mapping) and "keys" in data:
        data = data["keys"]
    try:
        return _KEY_LIST.validate_python(data or [])
    except ValidationError as exc:
        raise PolicyError(format_validation_error(exc, where)) from None
