"""The policy: a typed, validated description of every defense of a service."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from .monitor import MonitorPolicy
from .observability import AuditPolicy
from .watermark import WatermarkPolicy

OutputMode = Literal["label", "top_k", "rounded", "full"]
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")

#: Routes that never need a key: health, readiness, metrics, schema and docs.
DEFAULT_OPEN_PATHS: tuple[str, ...] = (
    "/",
    "/livez",
    "/readyz",
    "/healthz",
    "/metrics",
    "/schema.json",
    "/docs.json",
    "/favicon.ico",
    "/static_content/*",
    "/assets/*",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyEntry(_Strict):
    """One API key, stored only as the SHA-256 hex digest of the key."""

    id: str = Field(description="Principal id: appears in spans and audit records.")
    sha256: str = Field(description="hex SHA-256 digest of the key (bento_invguard.hash_key)")
    tier: str

    @field_validator("id")
    @classmethod
    def _id_is_plain(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("must be 1-128 characters of letters, digits and _ . @ : -")
        return value

    @field_validator("sha256")
    @classmethod
    def _is_hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEX64.match(value):
            raise ValueError(
                "must be a 64-character hex SHA-256 digest; "
                "compute it with bento_invguard.hash_key(key) or `invguard keygen`"
            )
        return value


def key_clash(entries: Iterable[KeyEntry]) -> str | None:
    """Why these keys cannot serve together (two with one id, or one key listed
    twice), or None: each id names one principal, each key belongs to one.

    >>> from bento_invguard import hash_key
    >>> key_clash([KeyEntry(id="a", sha256=hash_key("x"), tier="t")] * 2)
    "key 'a': the id is used by two keys"
    """
    ids: set[str] = set()
    digests: set[str] = set()
    for entry in entries:
        if entry.id in ids:
            return f"key {entry.id!r}: the id is used by two keys"
        if entry.sha256 in digests:
            return f"key {entry.id!r}: the same key is listed twice"
        ids.add(entry.id)
        digests.add(entry.sha256)
    return None


class AdminKey(KeyEntry):
    """A key for the admin endpoints (list and clear blocks); it calls no model API."""

    tier: str = "admin"


class KeySources(_Strict):
    """Where else keys come from, so that no digest has to sit in the image."""

    env: str | None = Field(
        default="INVGUARD_KEYS",
        description="Environment variable holding a JSON list of key entries.",
    )
    file: Path | None = Field(
        default=None, description="YAML or JSON file with a list of key entries."
    )
    required: bool = Field(
        default=True, description="Refuse to start when the named file does not exist."
    )


def _check_limit_string(value: str | None) -> str | None:
    if value is None:
        return None
    from limits import parse_many

    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items:
        raise ValueError(
            f"{value!r} is not a rate limit in the notation of the limits library, "
            "e.g. '10/second;600/minute;5000/day'"
        )
    return value


class Tier(_Strict):
    """What callers of one tier may call, how much they may ask, and how much they see."""

    output: OutputMode = "label"
    k: int = Field(default=1, ge=1, description="Scores kept by top_k.")
    decimals: int = Field(default=2, ge=0, le=8, description="Rounding for top_k and rounded.")
    endpoints: tuple[str, ...] = Field(
        default=("*",), description="API names (shell globs) this tier may call."
    )
    rate_limit: str | None = Field(
        default=None,
        description="Per-principal limits, e.g. '10/second;600/minute;5000/day'. Rows count: "
        "a request of n rows spends n. Long windows are query budgets.",
    )
    watermark: WatermarkPolicy | None = Field(
        default=None,
        description="Serving-time watermark: {rate: 0.005, secret: ${VAR}}. Off by default.",
    )

    @field_validator("rate_limit")
    @classmethod
    def _limit_notation(cls, value: str | None) -> str | None:
        return _check_limit_string(value)


class InputPolicy(_Strict):
    """Checks applied to the model input before the model sees it."""

    argument: str | None = Field(
        default=None,
        description="Name of the API argument holding the input (dotted for fields); "
        "default: the first ndarray argument, else the first argument.",
    )
    shape: tuple[int, ...] | None = Field(
        default=None, description="Per-row shape; the batch dimension is implied."
    )
    dtype: Literal["float", "int", "number"] = "float"
    finite: bool = True
    min: float | None = None
    max: float | None = None
    max_rows: int | None = Field(default=1024, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    profile: Path | None = Field(
        default=None, description="Reference profile JSON (Profile.fit), relative to the policy."
    )

    @field_validator("shape")
    @classmethod
    def _positive_dims(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(d < 1 for d in value):
            raise ValueError("every dimension must be >= 1")
        return value

    @model_validator(mode="after")
    def _min_below_max(self) -> InputPolicy:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class RateLimiting(_Strict):
    """How limits are counted (the limits are set per tier and per endpoint)."""

    strategy: Literal["auto", "moving-window", "fixed-window", "sliding-window-counter"] = Field(
        default="auto",
        description="auto: moving windows (exact over any interval) up to one hour, fixed "
        "windows (one counter each) for longer budgets. moving-window keeps one entry per "
        "counted row, so its cost grows with large limits.",
    )
    endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="Global limits per API name, shared by all callers: {predict: '500/second'}.",
    )
    timeout: float = Field(
        default=0.5, gt=0, le=10, description="Seconds any storage call may take before it fails."
    )

    @field_validator("endpoints")
    @classmethod
    def _endpoint_limits(cls, value: dict[str, str]) -> dict[str, str]:
        for limit in value.values():
            _check_limit_string(limit)
        return value


class Policy(_Strict):
    """A service's defenses. Build it in Python or load it with :meth:`from_file`.

    >>> from bento_invguard import Policy, hash_key
    >>> policy = Policy(
    ...     keys=[{"id": "alice", "sha256": hash_key("secret"), "tier": "public"}],
    ...     tiers={"public": {"output": "label"}},
    ... )
    >>> policy.tiers["public"].output
    'label'
    """

    version: Literal[1] = 1
    keys: tuple[KeyEntry, ...] = ()
    keys_from: KeySources = KeySources()
    admin_keys: tuple[AdminKey, ...] = Field(
        default=(),
        description="Digests of keys for /invguard/admin/blocks; also INVGUARD_ADMIN_KEYS "
        "(a JSON list of {id, sha256}). No admin key: the admin endpoints do not exist.",
    )
    anonymous_tier: str | None = None
    tiers: dict[str, Tier]
    input: InputPolicy = InputPolicy()
    scores_field: str | None = Field(
        default=None,
        description="Field of a dict / pydantic output that holds the (n, classes) scores.",
    )
    open_paths: tuple[str, ...] = Field(
        default=(), description="More routes that need no key, added to the defaults."
    )
    storage: str = Field(
        default="memory://",
        description="Where shared state lives: memory:// (one process) or redis:// / rediss:// "
        "(redis+sentinel:// and redis+cluster:// for rate limits only, with the monitor "
        "off). ${VAR} is expanded from the environment; INVGUARD_STORAGE overrides it.",
    )
    storage_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Passed to the storage client (limits / redis-py)."
    )
    on_storage_error: Literal["closed", "open"] = Field(
        default="closed",
        description="closed: refuse with 503 when the storage fails; open: serve, and record "
        "that the limit was not applied.",
    )
    rate_limiting: RateLimiting = RateLimiting()
    audit: AuditPolicy = AuditPolicy()
    monitor: MonitorPolicy = MonitorPolicy()
    max_model_age_days: float | None = Field(
        default=None,
        gt=0,
        description="Warn at startup (and set invguard_model_stale) past this model age.",
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        """Load and validate a YAML or JSON policy; relative paths resolve beside it."""
        from .loading import policy_from_file

        return policy_from_file(path)

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the policy are resolved against."""
        return self._base_dir

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else self._base_dir / path

    @model_validator(mode="after")
    def _tiers_exist(self) -> Policy:
        if not self.tiers:
            raise ValueError("tiers: at least one tier is required")
        if self.anonymous_tier is not None and self.anonymous_tier not in self.tiers:
            raise ValueError(f"anonymous_tier: no tier named {self.anonymous_tier!r}")
        for i, key in enumerate(self.keys):
            if key.tier not in self.tiers:
                raise ValueError(f"keys.{i}.tier: no tier named {key.tier!r}")
        for section, entries in (("keys", self.keys), ("admin_keys", self.admin_keys)):
            clash = key_clash(entries)
            if clash is not None:
                raise ValueError(f"{section}: {clash}")
        return self
