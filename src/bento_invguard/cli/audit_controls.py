"""Which ML03 controls are on for one API: access, input, output, rate limits, monitor."""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass

from ..errors import GuardConfigError
from ..policy import Policy, Tier, load_keys
from .audit_target import AuditedApi
from .describe import (
    NOT_AVAILABLE,
    NOT_CONFIGURED,
    describe_output,
    input_checks,
    monitor_status,
    rate_limits_available,
    tier_rate_limit,
)
from .errors import CliError

#: Output modes that show every class's score (the raw material of inversion).
ALL_SCORES = ("full", "rounded")


@dataclass(frozen=True)
class Control:
    """One control's state on one API: on, partial, off, not configured, not available."""

    name: str
    status: str
    detail: str


def callers(api: AuditedApi) -> dict[str, Tier]:
    """The tiers that may call ``api`` (every tier for a policy file's ``*``)."""
    if api.policy is None:
        return {}
    return {
        name: tier
        for name, tier in api.policy.tiers.items()
        if api.name == "*" or any(fnmatch.fnmatchcase(api.name, p) for p in tier.endpoints)
    }


def keys_per_tier(policy: Policy) -> Counter[str]:
    try:
        return Counter(k.tier for k in load_keys(policy))
    except GuardConfigError as exc:
        raise CliError(f"the policy's keys cannot be loaded: {exc}") from None


def controls(api: AuditedApi) -> list[Control]:
    """The five controls of ``api``, in the order of ML03's prevention list."""
    policy = api.policy
    if policy is None:
        off = "the API is not guarded"
        return [
            Control("access control", "off", off),
            Control("input validation", "off", off),
            Control("output truncation", "off", off + ": callers get the model's raw output"),
            Control("rate limits", "off", off),
            Control("monitoring", "off", off),
        ]
    return [
        _access(api, policy),
        _input(api, policy),
        _output(api),
        _rate_limits(api, policy),
        Control("monitoring", *monitor_status(policy)),
    ]


def _access(api: AuditedApi, policy: Policy) -> Control:
    counts = keys_per_tier(policy)
    tiers = callers(api)
    keys = ", ".join(f"{name} {counts[name]}" for name in tiers) or "no tier may call it"
    anonymous = policy.anonymous_tier
    who = f"anonymous callers get tier {anonymous}" if anonymous in tiers else "a key is required"
    where = (
        "checked before the body is read"
        if api.middleware
        else "checked inside the API, after the body is parsed"
    )
    status = "partial" if anonymous in tiers else "on"
    return Control("access control", status, f"keys per tier: {keys}; {who}; {where}")


def _input(api: AuditedApi, policy: Policy) -> Control:
    spec = policy.input
    complete = spec.shape is not None and spec.profile is not None
    complete = complete and spec.min is not None and spec.max is not None
    checks = "; ".join(input_checks(spec, api.profile))
    return Control("input validation", "on" if complete else "partial", checks)


def _output(api: AuditedApi) -> Control:
    tiers = callers(api)
    if not tiers:
        return Control("output truncation", "on", "no tier may call it")
    modes = "; ".join(f"{name} {describe_output(tier)}" for name, tier in tiers.items())
    full = [name for name, tier in tiers.items() if tier.output == "full"]
    status = "off" if len(full) == len(tiers) else ("partial" if full else "on")
    return Control("output truncation", status, modes)


def _rate_limits(api: AuditedApi, policy: Policy) -> Control:
    if not rate_limits_available():
        return Control("rate limits", NOT_AVAILABLE, "")
    tiers = callers(api)
    limits = {name: tier_rate_limit(tier) for name, tier in tiers.items()}
    detail = "; ".join(f"{name} {limit or 'none'}" for name, limit in limits.items())
    shared = endpoint_limit(api, policy)
    if shared:
        detail += f"; all callers together {shared}"
    limited = [name for name, limit in limits.items() if limit]
    if not limited and not shared:
        return Control("rate limits", NOT_CONFIGURED, detail or "no tier may call it")
    return Control("rate limits", "on" if len(limited) == len(limits) else "partial", detail)


def endpoint_limit(api: AuditedApi, policy: Policy) -> str | None:
    """The limit shared by all callers of ``api``, if this version and the policy have one."""
    settings = getattr(policy, "rate_limiting", None)
    endpoints = getattr(settings, "endpoints", None) or {}
    value = endpoints.get(api.name)
    return str(value) if value else None
