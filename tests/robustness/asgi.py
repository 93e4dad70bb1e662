"""Raw ASGI requests to an app already started by a TestClient.

httpx (under TestClient) refuses header values it cannot encode and sets
Content-Length itself; a raw scope carries whatever bytes a hostile client
could put on the wire after the HTTP server has parsed them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.testclient import TestClient


@dataclass
class RawResponse:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    content: bytes = b""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def raw_request(
    client: TestClient,
    path: str,
    headers: Sequence[tuple[bytes, bytes]],
    chunks: Sequence[bytes] = (b"",),
    *,
    method: str = "POST",
) -> RawResponse:
    """Send one request straight to ``client.app`` on the client's event loop."""
    portal = client.portal
    assert portal is not None, "use inside `with TestClient(...)`"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(bytes(k), bytes(v)) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": client.app_state.copy(),
    }

    async def run() -> list[dict[str, Any]]:
        pending = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        sent: list[dict[str, Any]] = []
        done = anyio.Event()

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop(0)
            with anyio.move_on_after(10):
                await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        with anyio.fail_after(20):
            await client.app(scope, receive, send)
        return sent

    messages = portal.call(run)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    names = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    return RawResponse(start["status"], names, body)
