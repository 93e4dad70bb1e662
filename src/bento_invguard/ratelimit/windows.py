"""The windows that apply to a query: which limits, for whom, counted how.

A tier's ``rate_limit`` applies to each caller on its own (the principal, or
the client address for anonymous callers); ``rate_limiting.endpoints`` limits
apply to every caller of that API together. Each window is one limits
``RateLimitItem`` under identifiers that also name the strategy, so keys of
different strategies never meet in the storage.
"""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItem, parse_many

from ..context import QueryContext
from ..policy import Policy

NAMESPACE = "invguard"
#: With strategy "auto", windows up to this long are moving windows (exact over any
#: interval); longer ones, the budgets, are fixed windows (one counter, O(1) memory).
AUTO_MOVING_MAX_SECONDS = 3600
#: The strategy whose hits can be given back through limits' public storage calls
#: (a counter: ``incr`` by a negative amount, or ``decr``). A moving window's entries
#: and a sliding window counter's weighted counts cannot be removed publicly.
REFUNDABLE = "fixed-window"


def strategy_for(item: RateLimitItem, configured: str) -> str:
    """The limits strategy that counts ``item``: the configured one, or auto's choice.

    >>> from limits import parse
    >>> strategy_for(parse("60/minute"), "auto"), strategy_for(parse("2000/day"), "auto")
    ('moving-window', 'fixed-window')
    """
    if configured != "auto":
        return configured
    return "moving-window" if item.get_expiry() <= AUTO_MOVING_MAX_SECONDS else "fixed-window"


@dataclass(frozen=True, slots=True)
class Window:
    """One limit counted for one caller (or one endpoint) with one strategy."""

    item: RateLimitItem
    identifiers: tuple[str, ...]
    scope: str  # "principal" or "endpoint", for messages
    strategy: str

    @property
    def refundable(self) -> bool:
        return self.strategy == REFUNDABLE

    @property
    def key(self) -> str:
        """The storage key, as limits' strategies build it."""
        return self.item.key_for(*self.identifiers)

    def describe(self) -> str:
        """Who this window counts, for a refusal's message."""
        return "this key" if self.scope == "principal" else f"endpoint {self.identifiers[-1]!r}"


class WindowPlan:
    """The policy's limits, parsed once; :meth:`for_query` lists a query's windows."""

    def __init__(self, policy: Policy) -> None:
        settings = policy.rate_limiting
        self.strategy = settings.strategy
        self.tier_limits = {
            name: tuple(parse_many(tier.rate_limit))
            for name, tier in policy.tiers.items()
            if tier.rate_limit
        }
        self.endpoint_limits = {
            name: tuple(parse_many(limit)) for name, limit in settings.endpoints.items()
        }

    def __bool__(self) -> bool:
        return bool(self.tier_limits or self.endpoint_limits)

    def for_query(self, ctx: QueryContext) -> list[Window]:
        who = ("principal", ctx.principal) if ctx.principal else ("anonymous", ctx.client or "-")
        found: list[Window] = []
        if ctx.tier_name in self.tier_limits:
            found += [
                self._window(item, who, "principal") for item in self.tier_limits[ctx.tier_name]
            ]
        if ctx.endpoint in self.endpoint_limits:
            found += [
                self._window(item, ("endpoint", ctx.endpoint), "endpoint")
                for item in self.endpoint_limits[ctx.endpoint]
            ]
        return found

    def _window(self, item: RateLimitItem, who: tuple[str, str], scope: str) -> Window:
        name = strategy_for(item, self.strategy)
        # The strategy is part of the key: strategies keep different Redis types, and
        # switching strategy must not meet the old keys (WRONGTYPE) until they expire.
        return Window(item, (NAMESPACE, name, *who), scope, name)
