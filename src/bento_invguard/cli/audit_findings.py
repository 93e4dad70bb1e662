"""What is missing: findings with a severity, from the policy of each API."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..policy import Policy, Tier
from ..view.setup import view_thresholds
from .audit_controls import ALL_SCORES, callers, endpoint_limit, keys_per_tier
from .audit_target import AuditedApi
from .describe import monitor_status, rate_limits_available, tier_rate_limit

Severity = Literal["high", "moderate", "low"]
SEVERITIES: tuple[Severity, ...] = ("high", "moderate", "low")
#: A limit window at least this long (seconds) counts as a query budget.
BUDGET_WINDOW_S = 3600


@dataclass(frozen=True)
class Finding:
    severity: Severity
    control: str
    message: str
    apis: tuple[str, ...]


def findings(apis: Iterable[AuditedApi], classes: int | None = None) -> list[Finding]:
    """Every finding, the same one on several APIs merged, most severe first.

    ``classes``: how many classes the model scores, when known (``--classes``).
    """
    merged: dict[tuple[Severity, str, str], list[str]] = {}
    for api in apis:
        for severity, control, message in _api_findings(api, classes):
            merged.setdefault((severity, control, message), []).append(api.name)
    found = [Finding(s, c, m, tuple(names)) for (s, c, m), names in merged.items()]
    return sorted(found, key=lambda f: SEVERITIES.index(f.severity))


def has_budget(limit: str | None) -> bool:
    """Whether a limit string has a window of an hour or more (a query budget)."""
    if not limit:
        return False
    from limits import parse_many

    try:
        return any(item.get_expiry() >= BUDGET_WINDOW_S for item in parse_many(limit))
    except ValueError:
        return False


def _api_findings(api: AuditedApi, classes: int | None) -> Iterable[tuple[Severity, str, str]]:
    policy = api.policy
    if api.guarded_by == "skip":
        yield (
            "low",
            "access control",
            (
                "left unguarded (protect skip): a key of any tier is required unless its path "
                "is open, and no other control applies; skip only APIs that serve no model output"
            ),
        )
        return
    yield from _output_findings(api)
    if policy is None:
        yield (
            "high",
            "access control",
            ("not guarded: anyone who can reach the API gets the model's raw output"),
        )
        return
    if not api.middleware:
        yield (
            "low",
            "access control",
            (
                "guarded with @guard only: the key is checked after BentoML has read and parsed "
                "the body; @protect the service to refuse before"
            ),
        )
    yield from _access_findings(api, policy)
    for name, tier in callers(api).items():
        if tier.output == "top_k" and classes is not None and tier.k >= classes:
            yield (
                "moderate",
                "output truncation",
                (
                    f"tier {name!r} has top_k with k={tier.k} for {classes} classes: every "
                    f"class's score is shown (to {tier.decimals} decimals), as with output: "
                    f"rounded; use a k below {classes}, or output: label"
                ),
            )
            tier = tier.model_copy(update={"output": "rounded"})
        yield from _tier_findings(api, policy, name, tier)
    yield from _input_findings(policy)
    status, _ = monitor_status(policy)
    if status != "on":
        yield "moderate", "monitoring", f"no detection of probing query patterns ({status})"


def _output_findings(api: AuditedApi) -> Iterable[tuple[Severity, str, str]]:
    contract = api.output_contract
    if contract == "unknown":
        if api.policy is not None:
            yield (
                "low",
                "output truncation",
                (
                    "the return annotation does not say the API returns (n, classes) scores: "
                    "an output that does not is refused at its first call (annotate "
                    "-> np.ndarray, or a pydantic model with its scores_field)"
                ),
            )
    elif contract != "scores":
        yield "high", "output truncation", contract


def _access_findings(api: AuditedApi, policy: Policy) -> Iterable[tuple[Severity, str, str]]:
    tiers = callers(api)
    anonymous = policy.anonymous_tier
    if anonymous in tiers:
        if tiers[anonymous].output == "full":
            yield (
                "high",
                "access control",
                (f"callers without a key get full scores (anonymous_tier {anonymous!r})"),
            )
        else:
            yield (
                "moderate",
                "access control",
                (
                    f"callers without a key are answered (anonymous_tier {anonymous!r}): "
                    "probing costs nothing and there is no key to revoke"
                ),
            )
    elif not keys_per_tier(policy):
        yield (
            "low",
            "access control",
            (
                "no keys are configured here (key file, inline or environment): every call "
                "gets 401 until keys are provided"
            ),
        )


def _tier_findings(
    api: AuditedApi, policy: Policy, name: str, tier: Tier
) -> Iterable[tuple[Severity, str, str]]:
    if tier.output not in ALL_SCORES:
        return
    limit = tier_rate_limit(tier) or endpoint_limit(api, policy)
    what = "full scores" if tier.output == "full" else f"all scores to {tier.decimals} decimals"
    if not rate_limits_available():
        severity: Severity = "high" if tier.output == "full" else "moderate"
        yield (
            severity,
            "rate limits",
            (f"tier {name!r} gets {what} and this version has no rate limits or query budgets"),
        )
    elif not limit:
        severity = "high" if tier.output == "full" else "moderate"
        yield (
            severity,
            "rate limits",
            (
                f"tier {name!r} gets {what} with no rate limit or query budget: "
                "a key holder can query without bound"
            ),
        )
    elif not has_budget(limit):
        yield (
            "moderate",
            "rate limits",
            (
                f"tier {name!r} gets {what} with rate limit {limit!r} but no query budget "
                "(no window of an hour or more): a patient caller collects enough queries"
            ),
        )


def _input_findings(policy: Policy) -> Iterable[tuple[Severity, str, str]]:
    spec = policy.input
    if spec.profile is None:
        yield (
            "moderate",
            "input validation",
            (
                "no reference profile: synthetic and out-of-distribution probes are accepted, "
                "and the shared view's radius is not calibrated on the data "
                "(invguard profile fit)"
            ),
        )
        if policy.monitor.enabled and view_thresholds(policy, None) is None:
            yield (
                "high",
                "monitor",
                "the shared view is off (no profile, no input range and shape, no "
                "monitor.view.radius): probing spread over many keys is not caught",
            )
    if spec.min is None and spec.max is None:
        yield "moderate", "input validation", "no input range (input.min / input.max)"
    elif spec.min is None or spec.max is None:
        bound = "input.min" if spec.min is None else "input.max"
        yield "low", "input validation", f"the input range is open on one side ({bound})"
    if spec.shape is None:
        yield "low", "input validation", "no input shape: rows of any shape reach the model"
    if not spec.finite:
        yield "low", "input validation", "non-finite values (NaN, inf) reach the model"
    if spec.max_rows is None:
        yield "low", "input validation", "no cap on rows per request (input.max_rows)"
