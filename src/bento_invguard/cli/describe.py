"""One-line descriptions of policy parts, shared by ``check`` and ``audit``.

Controls that later versions add to the policy (rate limits, monitoring) are
read with ``getattr``, so these descriptions keep working on any version.
"""

from __future__ import annotations

from typing import Any

from ..policy import InputPolicy, Policy, Tier
from ..reference import Profile

NOT_AVAILABLE = "not available in this version"
NOT_CONFIGURED = "not configured"


def describe_output(tier: Tier) -> str:
    """``label``, ``top_k (k=3, 2 decimals)``, ``rounded (2 decimals)`` or ``full``."""
    if tier.output == "top_k":
        return f"top_k (k={tier.k}, {tier.decimals} decimals)"
    if tier.output == "rounded":
        return f"rounded ({tier.decimals} decimals)"
    return tier.output


def input_checks(spec: InputPolicy, profile: Profile | None) -> list[str]:
    """The checks that run on every input, in the order they run."""
    checks: list[str] = []
    if spec.shape is not None:
        checks.append("shape (n, " + ", ".join(str(d) for d in spec.shape) + ")")
    checks.append(f"dtype {spec.dtype}")
    if spec.finite:
        checks.append("finite")
    if spec.min is not None or spec.max is not None:
        low = "-inf" if spec.min is None else f"{spec.min:g}"
        high = "inf" if spec.max is None else f"{spec.max:g}"
        checks.append(f"range [{low}, {high}]")
    if spec.max_rows is not None:
        checks.append(f"at most {spec.max_rows} rows")
    checks.append(f"body at most {spec.max_body_bytes} bytes")
    if spec.profile is not None:
        detail = f"profile {spec.profile}"
        if profile is not None:
            detail += (
                f" ({len(profile.lower)} features, fitted on {profile.n_samples} rows, "
                f"max_outside {profile.max_outside})"
            )
        checks.append(detail)
    return checks


def tier_rate_limit(tier: Tier) -> str | None:
    """The tier's per-principal limits, or None (also when this version has none)."""
    value = getattr(tier, "rate_limit", None)
    return str(value) if value else None


def rate_limits_available() -> bool:
    return "rate_limit" in Tier.model_fields


def monitor_status(policy: Policy) -> tuple[str, str]:
    """(status, detail) of probing detection: on, off, not configured or not available."""
    if "monitor" not in Policy.model_fields:
        return NOT_AVAILABLE, ""
    monitor: Any = getattr(policy, "monitor", None)
    if monitor is None:
        return NOT_CONFIGURED, "no monitor section in the policy"
    if getattr(monitor, "enabled", True) is False:
        return "off", "monitor.enabled is false"
    return "on", "probing detection is on"
