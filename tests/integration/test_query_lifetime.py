"""A query is freed once it is answered, whatever outlives the request.

Servers keep things a request touched after it ends: uvicorn keeps the scope
until the connection's next request, and a cancelled keep-alive timer keeps
a copy of the request's context (with BentoML's Request, whose ``send`` is
the guard's responder) for seconds. None of them may keep the query, with
its input and scores, alive.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
from typing import Any

import pytest

from bento_invguard import Policy, QueryContext, current_query
from bento_invguard.integration.middleware import GuardMiddleware

from ..conftest import policy_dict


class KeepingApp:
    """An ASGI app that keeps, past the request, what servers are seen to keep."""

    def __init__(self) -> None:
        self.kept: dict[str, Any] = {}
        self.seen: QueryContext | None = None
        self.on_request: QueryContext | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        self.seen = current_query()
        self.on_request = scope["state"]["invguard"]
        self.kept = {"context": contextvars.copy_context(), "scope": scope, "send": send}
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[1.0]"})


def serve_once(
    app: KeepingApp, key: str, policy: Policy, header: bytes = b"authorization"
) -> list[dict[str, Any]]:
    guarded = GuardMiddleware(app, policy=policy, routes={"/predict": "predict"})
    body = json.dumps({"x": [[1.0, 2.0, 0.5, 3.0]]}).encode()
    scope = {
        "type": "http",
        "path": "/predict",
        "method": "POST",
        "headers": [
            (header, (f"Bearer {key}" if header == b"authorization" else key).encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(guarded(scope, receive, send))
    return sent


def live_queries(principal: str) -> list[QueryContext]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, QueryContext) and o.principal == principal]


@pytest.mark.parametrize("holder", ["context", "scope", "send"])
def test_what_outlives_the_request_does_not_keep_the_query(
    tier_keys: dict[str, str], holder: str
) -> None:
    policy = Policy.model_validate(policy_dict(tier_keys))
    app = KeepingApp()
    sent = serve_once(app, tier_keys["partner"], policy)
    assert 200 == sent[0]["status"]
    assert app.seen is not None and "user-partner" == app.seen.principal  # served as the caller
    app.seen = app.on_request = None
    kept = app.kept[holder]
    app.kept = {}

    assert [] == live_queries("user-partner"), f"the {holder} kept the query"
    if holder == "context":
        assert kept.run(current_query) is None
    if holder == "scope":
        assert "invguard" not in kept.get("state", {})


def test_the_query_is_on_the_request_while_it_is_served(tier_keys: dict[str, str]) -> None:
    """request.state.invguard holds the query during the request (principal and tier)."""
    policy = Policy.model_validate(policy_dict(tier_keys))
    app = KeepingApp()
    serve_once(app, tier_keys["trusted"], policy, header=b"x-api-key")
    assert app.on_request is not None
    assert ("user-trusted", "trusted") == (app.on_request.principal, app.on_request.tier_name)
