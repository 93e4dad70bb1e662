"""Rejections on the wire: the JSON error body of DESIGN.md's HTTP contract."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Send

from ..errors import GuardRejection


def rejection_payload(rejection: GuardRejection) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(rejection.body(), separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in rejection.headers.items()
    ]
    return rejection.status, headers, body


async def send_rejection(send: Send, rejection: GuardRejection) -> None:
    status, headers, body = rejection_payload(rejection)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def rejection_response(rejection: GuardRejection) -> Any:
    """The same error as a Starlette response, for code that returns responses."""
    from starlette.responses import Response

    status, headers, body = rejection_payload(rejection)
    response = Response(content=body, status_code=status, media_type="application/json")
    for name, value in headers:
        if name not in (b"content-length", b"content-type"):
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
    return response


def schema_error_detail(body: bytes) -> str:
    """A one-line detail from BentoML's own 400 body (a pydantic error list)."""
    try:
        data = json.loads(body)
        first = data["detail"][0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return f"{loc}: {first['msg']}"
    except (ValueError, KeyError, IndexError, TypeError):
        return "the request body does not match the API's schema"
