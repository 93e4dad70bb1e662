"""Settings from the environment: the ``INVGUARD_*`` variables that override a policy.

    INVGUARD_POLICY      policy file, when guard()/protect() is given none
    INVGUARD_STORAGE     storage URI, in place of the policy's ``storage``
    INVGUARD_ADMIN_KEYS  JSON list of {id, sha256}: more keys for the admin endpoints
    INVGUARD_KEYS        JSON list of {id, sha256, tier}: more API keys (the variable
                         is the policy's ``keys_from.env``; INVGUARD_KEYS by default)

Read with pydantic-settings at startup; a bad value fails there with a message
that names the variable.

>>> import os
>>> os.environ["INVGUARD_STORAGE"] = "redis://cache:6379/0"
>>> environment_settings().storage
'redis://cache:6379/0'
>>> del os.environ["INVGUARD_STORAGE"]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from ..errors import PolicyError
from .model import AdminKey, KeyEntry

PREFIX = "INVGUARD_"


class GuardSettings(BaseSettings):
    """The ``INVGUARD_*`` overrides (each None or empty when its variable is unset)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    policy: Path | None = Field(default=None, description="Policy file for guard()/protect().")
    storage: str | None = Field(default=None, description="Storage URI, over the policy's.")
    admin_keys: tuple[AdminKey, ...] = Field(
        default=(), description="More admin keys (a JSON list of {id, sha256})."
    )


def environment_settings() -> GuardSettings:
    """The overrides set in the environment now; :class:`PolicyError` names a bad variable."""
    try:
        return GuardSettings()
    except (ValidationError, SettingsError) as exc:
        raise PolicyError(_describe(exc, lambda field: PREFIX + field.upper())) from None


def keys_from_environment(variable: str) -> list[KeyEntry]:
    """The API keys in ``variable`` (a JSON list of {id, sha256, tier}); [] when unset."""
    try:
        settings = _key_list_settings(variable)()
    except (ValidationError, SettingsError) as exc:
        raise PolicyError(_describe(exc, lambda _: variable)) from None
    keys: list[KeyEntry] = getattr(settings, "keys")  # noqa: B009 (a field made at run time)
    return keys


class _KeyList(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)


@functools.lru_cache(maxsize=8)
def _key_list_settings(variable: str) -> type[BaseSettings]:
    # The variable's name comes from the policy (keys_from.env), so the field is made for it.
    return create_model(
        "KeyListSettings",
        __base__=_KeyList,
        keys=(list[KeyEntry], Field(default_factory=list, validation_alias=variable)),
    )


def _describe(exc: ValidationError | SettingsError, variable: Callable[[str], str]) -> str:
    if isinstance(exc, SettingsError):  # not JSON, for a list of keys (the only lists)
        named = re.search(r'field "([^"]+)"', str(exc))
        name = variable(named.group(1) if named else "?")
        return f"environment variable {name}: not a JSON list of keys: {exc.__cause__}"
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        field, *rest = [str(part) for part in error["loc"]] or ["?"]
        where = ".".join([variable(field), *rest])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "invalid environment variable:\n" + "\n".join(lines)
