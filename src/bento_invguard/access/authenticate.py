"""Authentication (API key -> principal and tier) and the tier's endpoint gate."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping

from ..context import QueryContext
from ..errors import Forbidden, Unauthenticated
from ..keys import KeyRing
from ..policy import Policy, load_keys


def presented_key(headers: Mapping[str, bytes]) -> bytes | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key`` (lower-case header names).

    Raises :class:`Unauthenticated` for a malformed Authorization header or two
    different keys, so a caller never silently gets the wrong identity.
    """
    bearer: bytes | None = None
    if (auth := headers.get("authorization")) is not None:
        scheme, _, token = auth.strip().partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <key>'")
        bearer = token.strip()
    api_key = headers.get("x-api-key")
    if api_key is not None:
        api_key = api_key.strip()
        if not api_key:
            raise Unauthenticated("the X-API-Key header is empty")
        if bearer is not None and bearer != api_key:
            raise Unauthenticated("Authorization and X-API-Key carry different keys")
    return bearer if bearer is not None else api_key


class AccessControl:
    """Turns request headers into a principal and tier, and gates endpoints by tier."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.keys = KeyRing((k.id, k.sha256, k.tier) for k in load_keys(policy))
        self._endpoint_cache: dict[tuple[str, str], bool] = {}

    def admit(self, ctx: QueryContext, headers: Mapping[str, bytes]) -> None:
        key = presented_key(headers)
        if key is None:
            anonymous = self.policy.anonymous_tier
            if anonymous is None:
                raise ctx.reject(
                    Unauthenticated(
                        "an API key is required: send 'Authorization: Bearer <key>' "
                        "or 'X-API-Key: <key>'"
                    ),
                    "access",
                )
            self._attach(ctx, None, anonymous)
            ctx.decide("access", "anonymous", anonymous)
            return
        principal = self.keys.lookup(key)
        if principal is None:
            raise ctx.reject(Unauthenticated("the API key is not valid"), "access")
        self._attach(ctx, principal.id, principal.tier)
        ctx.decide("access", "authenticated", principal.tier)

    def gate(self, ctx: QueryContext) -> None:
        """Refuse (403 forbidden) an endpoint the caller's tier may not call."""
        if ctx.endpoint is None or ctx.tier is None or ctx.tier_name is None:
            return
        cache_key = (ctx.tier_name, ctx.endpoint)
        allowed = self._endpoint_cache.get(cache_key)
        if allowed is None:
            allowed = any(fnmatch.fnmatchcase(ctx.endpoint, p) for p in ctx.tier.endpoints)
            self._endpoint_cache[cache_key] = allowed
        if not allowed:
            raise ctx.reject(
                Forbidden(f"tier {ctx.tier_name!r} may not call endpoint {ctx.endpoint!r}"),
                "access",
            )

    def _attach(self, ctx: QueryContext, principal: str | None, tier: str) -> None:
        ctx.principal = principal
        ctx.tier_name = tier
        ctx.tier = self.policy.tiers[tier]


#: Raw (lower-case) header name -> the name presented_key() reads.
_KEY_HEADERS = {b"authorization": "authorization", b"x-api-key": "x-api-key"}


def key_headers(raw_headers: list[tuple[bytes, bytes]]) -> dict[str, bytes]:
    """The key-carrying headers of an ASGI scope, by lower-case name.

    A key header sent twice with different values is refused: two identities
    is no identity.
    """
    found: dict[str, bytes] = {}
    for raw_name, value in raw_headers:
        name = _KEY_HEADERS.get(raw_name.lower())
        if name is not None:
            if found.get(name, value) != value:
                raise Unauthenticated(
                    f"the {raw_name.decode('latin-1')} header was sent twice with different keys"
                )
            found[name] = value
    return found
