"""What the middleware checks before the body, for a query that no middleware saw.

``@guard`` used alone (without ``@protect``) has no middleware in front of
it: its queries are authenticated, gated by tier and held to the body cap
here, from BentoML's request, with the middleware's rules.
"""

from __future__ import annotations

from ..access import AccessControl, key_headers
from ..bentoml_bridge import current_bentoml_request
from ..context import QueryContext
from ..errors import GuardRejection, PayloadTooLarge, Unauthenticated


def admit_request(ctx: QueryContext, access: AccessControl, max_body: int) -> None:
    """Authenticate the caller, gate the endpoint by tier, and refuse a body over the cap."""
    request = current_bentoml_request()
    if request is None:  # opened_by_guard implies a request; fail closed all the same
        raise ctx.reject(Unauthenticated("no request to authenticate"), "access")
    try:  # the middleware's rule: a key header sent twice with two keys is refused
        headers = key_headers(request.scope["headers"])
    except GuardRejection as rejection:
        raise ctx.reject(rejection, "access") from None
    access.admit(ctx, headers)
    access.gate(ctx)
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_body:
        raise ctx.reject(
            PayloadTooLarge(f"the body is {declared} bytes; the limit is {max_body} bytes"),
            "body",
        )
