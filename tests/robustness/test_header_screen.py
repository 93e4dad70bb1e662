"""The header screen: in front of BentoML's own middleware, installed once, recorded, real.

BentoML wraps the guard in middleware that decodes some request headers as
text (OpenTelemetry's ASGI middleware, its access log); ``GuardMiddleware``
puts a :class:`HeaderScreen` in front of the whole stack at lifespan startup.
These tests check where it sits, that a second lifespan does not stack a
second one, that its refusals of guarded paths are on the query span, that
it follows OpenTelemetry's configuration, and the answer of a real
``bentoml serve`` to such bytes on the wire.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import generate_key
from bento_invguard.integration.header_screen import (
    CAPTURE_HEADERS_ENV,
    DECODED_OUTSIDE,
    HeaderScreen,
    decoded_outside,
    install_header_screen,
)

from ..conftest import forget_bentoml_metrics
from ..telemetry.helpers import ROW, build_service, make_otel, telemetry_policy
from .asgi import raw_request
from .conftest import Served
from .contract import rejection

ROWS = json.dumps({"x": [ROW]}).encode()
BAD_USER_AGENT = b"\x80\\"  # not UTF-8, and a broken escape for unicode_escape


@pytest.fixture
def keys() -> dict[str, str]:
    return {tier: generate_key() for tier in ("public", "trusted", "limited")}


def headers_with(keys: dict[str, str], *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (b"authorization", f"Bearer {keys['trusted']}".encode()),
        (b"content-type", b"application/json"),
        *extra,
    ]


def test_the_screen_sits_in_front_of_bentomls_middleware_once(keys: dict[str, str]) -> None:
    """After startup the app's built stack starts with the screen, then Starlette's own
    error middleware (outside BentoML's metrics, OpenTelemetry and access log); a second
    lifespan of the same app does not add a second screen."""
    service = build_service(telemetry_policy(keys, audit={"sink": "none"}))
    forget_bentoml_metrics()
    app = service.to_asgi()
    for _ in range(2):
        with TestClient(app) as client:
            stack = app.middleware_stack
            assert HeaderScreen is type(stack)
            assert "ServerErrorMiddleware" == type(stack.app).__name__
            response = raw_request(client, "/predict", headers_with(keys, (b"host", b"\xff")))
            assert "invalid_header" == (rejection(response) or {}).get("error")


def test_a_refused_guarded_request_is_on_a_query_span(keys: dict[str, str]) -> None:
    """A guarded path refused by the screen gets the guard's span (error.type
    invalid_header, status 400); an open path is refused alike but not recorded."""
    otel = make_otel()
    service = build_service(
        telemetry_policy(keys, audit={"sink": "none"}),
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )
    forget_bentoml_metrics()
    with TestClient(service.to_asgi()) as client:
        bad = (b"user-agent", BAD_USER_AGENT)
        refused = rejection(raw_request(client, "/predict", headers_with(keys, bad), [ROWS]))
        assert {"error": "invalid_header", "header": "user-agent"} == {
            k: (refused or {}).get(k) for k in ("error", "header")
        }
        livez = raw_request(client, "/livez", [bad], method="GET")
        assert 400 == livez.status_code
    spans = otel.finished()
    assert 1 == len(spans), spans
    attributes = dict(spans[0].attributes or {})
    assert "invalid_header" == attributes["error.type"]
    assert 400 == attributes["http.response.status_code"]
    assert "predict" == attributes.get("invguard.endpoint")


def test_every_header_is_screened_when_otel_captures_request_headers(
    keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST set, OpenTelemetry's
    middleware decodes every request header, and the screen checks every header."""
    monkeypatch.setenv(CAPTURE_HEADERS_ENV, "x-note")
    assert None is decoded_outside()
    service = build_service(telemetry_policy(keys, audit={"sink": "none"}))
    forget_bentoml_metrics()
    with TestClient(service.to_asgi()) as client:
        bad = (b"x-note", BAD_USER_AGENT)
        refused = rejection(raw_request(client, "/predict", headers_with(keys, bad), [ROWS]))
        assert "x-note" == (refused or {}).get("header")
        good = (b"x-note", "café".encode())
        served = raw_request(client, "/predict", headers_with(keys, good), [ROWS])
        assert 200 == served.status_code, served.text


def test_by_default_the_screened_headers_follow_the_propagators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Host, User-Agent, Content-Type, Content-Length and what OpenTelemetry's global
    propagator reads (W3C trace context and baggage by default)."""
    monkeypatch.delenv(CAPTURE_HEADERS_ENV, raising=False)
    names = decoded_outside()
    assert names is not None
    assert DECODED_OUTSIDE | {b"traceparent", b"tracestate", b"baggage"} <= names


def test_a_websocket_with_undecodable_headers_is_closed_before_accept() -> None:
    """A WebSocket handshake carrying such bytes is closed (policy violation; servers
    answer it with 403), and the app behind the screen never sees it."""
    reached: list[Any] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [(b"user-agent", BAD_USER_AGENT)]}
    anyio.run(HeaderScreen(app), scope, receive, send)
    assert [] == reached
    assert [{"type": "websocket.close", "code": 1008}] == sent


def test_lifespan_and_valid_requests_pass_straight_through() -> None:
    """Lifespan scopes and requests whose screened headers are UTF-8 reach the app as
    they came, with the same receive and send."""
    reached: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append((scope["type"], receive, send))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        raise AssertionError(message)

    screen = HeaderScreen(app)
    ok = [(b"user-agent", "Zoë".encode()), (b"x-other", b"\xff")]
    anyio.run(screen, {"type": "lifespan"}, receive, send)
    anyio.run(screen, {"type": "http", "path": "/", "headers": ok}, receive, send)
    assert [("lifespan", receive, send), ("http", receive, send)] == reached


def test_installing_on_something_else_than_a_started_starlette_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No app in the lifespan scope (a bare ASGI harness): nothing to do, silently. Any
    other object: nothing installed, and a warning says the headers are not screened."""
    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        assert False is install_header_screen(None)
        assert [] == caplog.records
        assert False is install_header_screen(object())
    assert 1 == len(caplog.records)
    assert "not screened" in caplog.records[0].getMessage()


# ---------------------------------------------------------------- a real server
def raw_http(
    base_url: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """One POST written byte for byte on a socket (httpx would refuse these header bytes)."""
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    head = [(b"host", f"{url.hostname}:{url.port}".encode()), (b"connection", b"close")]
    head = [h for h in head if h[0] not in {k.lower() for k, _ in headers}] + headers
    head.append((b"content-length", str(len(body)).encode()))
    request = b"POST " + path.encode() + b" HTTP/1.1\r\n"
    request += b"".join(k + b": " + v + b"\r\n" for k, v in head) + b"\r\n" + body
    chunks: list[bytes] = []
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            chunks.append(data)
    raw = b"".join(chunks)
    top, _, content = raw.partition(b"\r\n\r\n")
    lines = top.split(b"\r\n")
    fields = (line.split(b":", 1) for line in lines[1:])
    names = {k.strip().lower().decode(): v.strip().decode("latin-1") for k, v in fields}
    return int(lines[0].split()[1]), names, content


@pytest.fixture
def wire(guarded_server: Served, digit_rows: np.ndarray) -> Iterator[Any]:
    """Send one request to the real server with a partner key and these extra headers."""
    key = guarded_server.key("partner", 14)
    guarded_server.presented.add(key)
    body = json.dumps({"x": [digit_rows[0].tolist()]}).encode()

    def send(*extra: tuple[bytes, bytes]) -> tuple[int, dict[str, str], bytes]:
        headers = [
            (b"authorization", b"Bearer " + key.encode()),
            (b"content-type", b"application/json"),
            *extra,
        ]
        return raw_http(guarded_server.base_url, "/predict", headers, body)

    yield send


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"user-agent", BAD_USER_AGENT),
        (b"traceparent", BAD_USER_AGENT),
        (b"content-type", b"application/json\xe9"),
    ],
)
def test_a_real_server_answers_undecodable_headers_with_400_json(
    wire: Any, guarded_server: Served, name: bytes, value: bytes
) -> None:
    """``bentoml serve`` with tracing on: such bytes on the wire get a complete 400
    invalid_header JSON response (before: a 500 from OpenTelemetry's middleware, or a
    response cut off by the access log), and the server logs no traceback."""
    tracebacks = guarded_server.log().count("Traceback")
    status, headers, content = wire((name, value))
    assert 400 == status, content[:300]
    assert headers["content-type"].startswith("application/json"), headers
    assert int(headers["content-length"]) == len(content)
    body = json.loads(content)
    assert {"error": "invalid_header", "header": name.decode()} == {
        k: body.get(k) for k in ("error", "header")
    }
    served_status, _, _ = wire((b"user-agent", "Zoë's phone".encode()))
    assert 200 == served_status
    assert tracebacks == guarded_server.log().count("Traceback")
