"""An OWASP-style risk rating of ML03 for the audited service, with one reason each.

Each factor is rated low, moderate or high *risk*: exploitability (how easily
an attacker gets answers worth inverting), detectability (how likely systematic
querying goes unnoticed) and technical impact (how much the answers reveal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .audit_controls import ALL_SCORES, callers, endpoint_limit
from .audit_findings import SEVERITIES, Severity, has_budget
from .audit_target import AuditedApi
from .describe import monitor_status, tier_rate_limit


@dataclass(frozen=True)
class Rating:
    level: Severity
    reason: str


@dataclass(frozen=True)
class RiskSummary:
    exploitability: Rating
    detectability: Rating
    technical_impact: Rating

    @property
    def overall(self) -> Severity:
        levels = (self.exploitability, self.detectability, self.technical_impact)
        return min((r.level for r in levels), key=SEVERITIES.index)


def risk_summary(apis: Sequence[AuditedApi]) -> RiskSummary:
    return RiskSummary(_exploitability(apis), _detectability(apis), _technical_impact(apis))


def _exploitability(apis: Sequence[AuditedApi]) -> Rating:
    if any(api.policy is None for api in apis):
        return Rating("high", "an API is not guarded: no key is needed to query the model")
    if any(api.policy and api.policy.anonymous_tier in callers(api) for api in apis):
        return Rating("high", "callers without a key are answered")
    if any(_unbudgeted_scores(api) for api in apis):
        return Rating("moderate", "a key is needed, but a tier sees scores with no query budget")
    if any(_probes_accepted(api) for api in apis):
        return Rating(
            "moderate", "a key is needed, but inputs outside the training data are accepted"
        )
    return Rating("low", "a key is needed, queries are budgeted and off-profile probes refused")


def _detectability(apis: Sequence[AuditedApi]) -> Rating:
    monitored = all(api.policy and monitor_status(api.policy)[0] == "on" for api in apis)
    limited = all(_every_caller_limited(api) for api in apis)
    if monitored and limited:
        return Rating("low", "probing patterns are detected and every caller is rate limited")
    if monitored or limited:
        missing = "no rate limits for every caller" if monitored else "no probing detection"
        return Rating("moderate", f"{missing}: part of an attack looks like normal use")
    return Rating("high", "no probing detection and not every caller is rate limited")


def _technical_impact(apis: Sequence[AuditedApi]) -> Rating:
    modes = set()
    for api in apis:
        if api.policy is None:
            modes.add("full")
        modes.update(tier.output for tier in callers(api).values())
    if "full" in modes:
        return Rating("high", "full confidence scores leave the service: inversion's raw material")
    if modes & {"rounded", "top_k"}:
        return Rating("moderate", "rounded or top-k scores still leak confidence information")
    return Rating("low", "callers see labels only: inversion needs far more queries")


def _unbudgeted_scores(api: AuditedApi) -> bool:
    if api.policy is None:
        return True
    shared = endpoint_limit(api, api.policy)
    return any(
        tier.output in ALL_SCORES and not has_budget(tier_rate_limit(tier) or shared)
        for tier in callers(api).values()
    )


def _probes_accepted(api: AuditedApi) -> bool:
    spec = api.policy.input if api.policy else None
    return spec is None or spec.profile is None or spec.min is None or spec.max is None


def _every_caller_limited(api: AuditedApi) -> bool:
    if api.policy is None:
        return False
    shared = endpoint_limit(api, api.policy)
    return all(tier_rate_limit(tier) or shared for tier in callers(api).values())
