"""Generated bad input against a guarded service in process: never a 5xx, never the model.

Hypothesis builds bodies (arbitrary JSON, NaN / Infinity / 1e308, wrong
dtypes and shapes, empty batches, deep nesting, raw bytes), content types,
key headers (unicode, control characters, NUL, two different keys) and, for
``**kwargs`` APIs, argument names that collide with BentoML's own. Every
answer must be a 2xx or the contract's JSON error with a known reason, and
the model must run exactly once for a 2xx and never for a rejection, and only
on input the policy allows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from starlette.testclient import TestClient

from ..conftest import forget_bentoml_metrics
from .asgi import raw_request
from .contract import rejection
from .fuzz_service import CALLS, KEYS, KWARGS_PATHS, PATHS, POLICY, Fuzzed, allowed_input

SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_BODY = POLICY.input.max_body_bytes


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    forget_bentoml_metrics()
    # An exception escaping the app (even after the response started) fails the test.
    with TestClient(Fuzzed.to_asgi(), raise_server_exceptions=True) as c:
        yield c


# ---------------------------------------------------------------- strategies
special_numbers = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 10.000001, -1e-9, 2**63, -(2**64)]
)
good_cell = st.floats(min_value=0.0, max_value=10.0)
bad_cell = st.one_of(
    special_numbers,
    st.floats(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.lists(good_cell, max_size=2),
    st.dictionaries(st.text(max_size=3), good_cell, max_size=1),
)
cell = st.one_of(good_cell, bad_cell)


@st.composite
def batches(draw: st.DrawFn) -> Any:
    """Mostly (n, 4) matrices, all good or with one bad cell; sometimes other shapes."""
    n = draw(st.integers(min_value=0, max_value=5))
    width = draw(st.sampled_from([4, 4, 4, 4, 4, 4, 0, 1, 3, 5, 64]))
    rows = [draw(st.lists(good_cell, min_size=width, max_size=width)) for _ in range(n)]
    if rows and width and draw(st.booleans()):
        row, col = draw(st.integers(0, n - 1)), draw(st.integers(0, width - 1))
        rows[row][col] = draw(cell)
    kind = draw(st.sampled_from(["matrix"] * 8 + ["ragged", "flat", "deep", "scalar", "empty"]))
    if kind == "ragged" and rows:
        rows[-1] = rows[-1][:-1]
    elif kind == "flat":
        return draw(st.lists(cell, max_size=8))
    elif kind == "deep":
        return [rows]
    elif kind == "scalar":
        return draw(cell)
    elif kind == "empty":
        return draw(st.sampled_from([[], [[]], [[], []], {}]))
    return rows


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=12),
        special_numbers,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=20,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["x"] * 6 + ["x+extra", "json", "bytes", "nested", "big"]))
    if shape == "x":
        value: Any = {"x": draw(batches())}
    elif shape == "x+extra":
        value = {"x": draw(batches()), draw(st.text(max_size=8)): draw(json_values)}
    elif shape == "json":
        value = draw(json_values)
    elif shape == "bytes":
        return draw(st.binary(max_size=300))
    elif shape == "nested":
        depth = draw(st.integers(min_value=50, max_value=3000))
        return b'{"x":' + b"[" * depth + b"1.0" + b"]" * depth + b"}"
    else:
        rows = draw(st.integers(min_value=100, max_value=2000))
        return json.dumps({"x": [[1.0, 2.0, 3.0, 4.0]] * rows}).encode()
    return json.dumps(value, allow_nan=True).encode()


content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=zz",
        "application/vnd.bentoml+pickle",
        "Application/VND.BentoML+Pickle; q=0.9",
        "image/png",
        "\u00e9/\u00e8",  # sent as UTF-8 (see UTF8_ONLY)
    ]
)


@st.composite
def key_headers(draw: st.DrawFn) -> dict[str, str]:
    kind = draw(st.sampled_from(["tier"] * 8 + ["none", "junk", "two", "bearer-junk"]))
    tier = draw(st.sampled_from(sorted(KEYS)))
    if kind == "tier":
        name = draw(st.sampled_from(["Authorization", "X-API-Key"]))
        return {name: f"Bearer {KEYS[tier]}" if name == "Authorization" else KEYS[tier]}
    if kind == "none":
        return {}
    junk = draw(st.text(st.characters(codec="ascii"), max_size=40))
    if kind == "junk":
        return {"X-API-Key": junk}
    if kind == "two":
        return {"Authorization": f"Bearer {KEYS[tier]}", "X-API-Key": KEYS["trusted"] + junk}
    return {"Authorization": junk}


def send(
    client: TestClient, path: str, body: bytes, ctype: str | None, keys: dict[str, str]
) -> Any:
    headers = {k: v.encode("latin-1", "replace") for k, v in keys.items()}
    if ctype is not None:
        headers["content-type"] = ctype.encode()
    return client.post(path, content=body, headers=headers)


def check(response: Any, calls_before: int) -> tuple[dict[str, Any] | None, list[Any]]:
    """The contract, plus: the model ran once per 2xx, never per rejection, on allowed input."""
    refused = rejection(response)
    if currently_in_test_context():
        event(f"{response.status_code} {refused['error'] if refused else 'ok'}")
    seen = CALLS.since(calls_before)
    if refused is not None:
        assert [] == seen, f"the model ran for a {response.status_code}: {refused}"
    else:
        assert 1 == len(seen), seen
        assert allowed_input(seen[0][1]), seen[0]
    return refused, seen


# ---------------------------------------------------------------- properties
@SETTINGS
@given(
    path=st.sampled_from(PATHS),
    body=bodies(),
    ctype=content_types,
    keys=key_headers(),
)
def test_generated_requests_keep_the_contract(
    client: TestClient, path: str, body: bytes, ctype: str | None, keys: dict[str, str]
) -> None:
    """Any body, content type and key header: a 2xx or the contract's error, never a 5xx."""
    before = CALLS.count()
    response = send(client, path, body, ctype, keys)
    refused, _ = check(response, before)
    if len(body) > MAX_BODY:
        assert refused is not None and refused["error"] in (
            "payload_too_large",
            "unauthenticated",
            "unsupported_media_type",
        )


@settings(SETTINGS, max_examples=100)
@given(
    path=st.sampled_from(KWARGS_PATHS),
    x=batches(),
    kwargs=st.dictionaries(
        st.one_of(
            st.sampled_from(
                ["ctx", "context", "self", "func", "x", "kwargs", "args", "invguard", "tier"]
            ),
            st.text(max_size=10),
        ),
        st.one_of(json_values, st.just("trusted"), st.just({"tier": "trusted"})),
        max_size=4,
    ),
    top_level=st.dictionaries(
        st.sampled_from(["ctx", "context", "invguard", "principal", "tier", "self"]),
        json_values,
        max_size=2,
    ),
)
def test_kwargs_apis_cannot_be_fed_bentomls_own_names(
    client: TestClient, path: str, x: Any, kwargs: dict[str, Any], top_level: dict[str, Any]
) -> None:
    """Body ``kwargs`` naming ctx, self, func, x...: the API gets BentoML's real context and
    valid input, or the caller a 422; a public caller still gets labels only."""
    body = json.dumps({**top_level, "x": x, "kwargs": kwargs}, allow_nan=True).encode()
    before = CALLS.count()
    response = send(client, path, body, "application/json", {"X-API-Key": KEYS["public"]})
    refused, _ = check(response, before)
    if refused is None:
        assert "1" == response.headers.get("x-ctx-ok")
        out = np.asarray(response.json())
        assert set(np.unique(out)) <= {0.0, 1.0} and (out.sum(axis=1) == 1).all(), out


header_bytes = st.binary(max_size=60)
#: Header names as an HTTP/1.1 server accepts them (tokens; h11 refuses anything else).
header_names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~", min_size=1, max_size=20
).map(str.encode)
#: Request headers that middleware outside the guard decodes as text: BentoML's access log
#: (Content-Type, Content-Length), OpenTelemetry's ASGI middleware (Host, User-Agent) and
#: its propagators (traceparent, tracestate, baggage). The header screen refuses bytes in
#: them that are not UTF-8 with 400 invalid_header (see test_header_screen.py).
DECODED_OUTSIDE = (
    b"content-type",
    b"content-length",
    b"host",
    b"user-agent",
    b"traceparent",
    b"tracestate",
    b"baggage",
)


def is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(SETTINGS, max_examples=120)
@given(
    key=st.one_of(
        header_bytes,
        st.text(max_size=30).map(lambda s: s.encode("utf-8")),
        st.sampled_from(sorted(KEYS)).map(lambda t: KEYS[t].encode()),
        st.tuples(st.sampled_from(sorted(KEYS)), header_bytes).map(
            lambda tb: KEYS[tb[0]].encode() + tb[1]
        ),
    ),
    name=st.sampled_from([b"x-api-key", b"authorization", b"X-Api-Key", b"AUTHORIZATION"]),
    scheme=st.sampled_from([b"", b"Bearer ", b"bearer  ", b"Basic ", b"Bearer\t", b"\x00Bearer "]),
    twice=st.one_of(st.none(), header_bytes),
    extra=st.lists(
        st.tuples(st.one_of(header_names, st.sampled_from(DECODED_OUTSIDE)), header_bytes),
        max_size=3,
    ),
    content_length=st.one_of(
        st.none(),
        st.sampled_from([b"abc", b"-1", b"", b" 12", b"99999999999999999999999", b"0", b"1e3"]),
    ),
)
def test_raw_key_headers_never_break_the_guard(
    client: TestClient,
    key: bytes,
    name: bytes,
    scheme: bytes,
    twice: bytes | None,
    extra: list[tuple[bytes, bytes]],
    content_length: bytes | None,
) -> None:
    """Header bytes as an HTTP server hands them over (control characters, NUL, invalid
    UTF-8, a key header twice, odd Content-Length, any bytes in the headers BentoML's own
    middleware decodes): the contract holds, and only a registered key, sent alone and
    exactly, gets an answer."""
    body = json.dumps({"x": [[1.0, 2.0, 3.0, 4.0]]}).encode()
    value = (scheme + key) if name.lower() == b"authorization" else key
    headers = [(name, value), (b"content-type", b"application/json")]
    if twice is not None:
        headers.append((name, twice))
    if content_length is not None:
        headers.append((b"content-length", content_length))
    headers += extra
    before = CALLS.count()
    response = raw_request(client, "/predict", headers, [body])
    refused, _ = check(response, before)
    if any(k in DECODED_OUTSIDE and not is_utf8(v) for k, v in extra):
        assert refused is not None and "invalid_header" == refused["error"], refused
    if refused is None:
        token = value.removeprefix(scheme).strip() if name.lower() == b"authorization" else value
        assert token.strip() in {k.encode() for k in KEYS.values()}, (name, value)


@settings(SETTINGS, max_examples=60)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=100),
            st.sampled_from([0, 900, 1500, 2500, 4097]).map(lambda n: b" " * n),
        ),
        min_size=1,
        max_size=6,
    ),
    declared=st.booleans(),
)
def test_streamed_bodies_are_capped_while_read(
    client: TestClient, chunks: list[bytes], declared: bool
) -> None:
    """A body sent in chunks, with or without Content-Length, over the cap is a 413."""
    headers = [(b"x-api-key", KEYS["trusted"].encode()), (b"content-type", b"application/json")]
    size = sum(len(c) for c in chunks)
    if declared:
        headers.append((b"content-length", str(size).encode()))
    before = CALLS.count()
    response = raw_request(client, "/predict", headers, chunks)
    refused, _ = check(response, before)
    if size > MAX_BODY:
        assert refused is not None and "payload_too_large" == refused["error"]


@pytest.mark.parametrize(
    ("body", "ctype", "check_name"),
    [
        (b"garbage", "multipart/form-data", "schema"),
        (b"garbage", "multipart/form-data; boundary=zz", "schema"),
        (
            b"--zz\r\nContent-Disposition: form-data\r\n\r\n1\r\n--zz--\r\n",
            "multipart/form-data; boundary=zz",
            None,
        ),
        (b"x=1&x=2", "application/x-www-form-urlencoded", None),
        (b'{"x": [[1, 2, 3, 4]], "kwargs": {"self": 1}}', "application/json", "schema"),
        (b'{"x": [[1, 2, 3, 4]], "kwargs": {"func": 1}}', "application/json", "schema"),
        (b'{"x": [[1, 2, 3, 4]], "kwargs": {"ctx": "me"}}', "application/json", "schema"),
        (b'{"x": [[1, 2, 3, 4]], "kwargs": {"x": [[99, 0, 0, 0]]}}', "application/json", "range"),
    ],
)
def test_bodies_bentoml_fails_on_are_422_not_500(
    client: TestClient, body: bytes, ctype: str, check_name: str | None
) -> None:
    """Found by the properties above: BentoML answers 500 for a multipart body without a
    (valid) boundary and for ``kwargs`` keys that collide with its own call arguments;
    under the guard they are 422 invalid_input and the model does not run."""
    before = CALLS.count()
    response = client.post(
        "/predict_kw", content=body, headers={"X-API-Key": KEYS["trusted"], "content-type": ctype}
    )
    refused, _ = check(response, before)
    assert refused is not None, response.text
    assert "invalid_input" == refused["error"]
    if check_name is not None:
        assert check_name == refused["check"], refused


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"user-agent", b"\x80\\"),
        (b"host", b"\x80\\"),
        (b"traceparent", b"\x80\\"),
        (b"baggage", b"k=\x80\\"),
        (b"content-type", b"application/json\xe9"),
        (b"content-length", b"3\xe9"),
        (b"User-Agent", b"\xe9"),
    ],
)
def test_headers_decoded_outside_the_guard_are_400_not_500(
    client: TestClient, name: bytes, value: bytes
) -> None:
    """Found by the header property: OpenTelemetry's ASGI middleware (Host, User-Agent, trace
    headers: UTF-8, else unicode_escape, which fails on b'\\x80\\\\') and BentoML's access
    log (Content-Type, Content-Length as UTF-8, while it sends the last body chunk) sit
    outside every user middleware and broke on such bytes (a 500, or a response cut off).
    The header screen in front of them answers 400 invalid_header naming the header, and
    the model does not run."""
    headers = [(b"x-api-key", KEYS["trusted"].encode()), (b"content-type", b"application/json")]
    headers = [*[h for h in headers if h[0] != name.lower()], (name, value)]
    body = json.dumps({"x": [[1.0, 2.0, 3.0, 4.0]]}).encode()
    before = CALLS.count()
    response = raw_request(client, "/predict", headers, [body])
    refused, _ = check(response, before)
    assert 400 == response.status_code
    assert refused is not None and "invalid_header" == refused["error"], refused
    assert name.lower().decode() == refused["header"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"user-agent", "Zoë's phone ☃".encode()),
        (b"host", "bücher.example".encode()),
        (b"x-note", b"\x80\\"),  # a header nothing outside the guard decodes
        (b"accept", b"\xe9"),
    ],
)
def test_utf8_and_unscreened_header_bytes_are_served(
    client: TestClient, name: bytes, value: bytes
) -> None:
    """The screen refuses only what would break: UTF-8 in a screened header, or any bytes
    in a header no outer layer decodes, are served as before."""
    headers = [(b"x-api-key", KEYS["trusted"].encode()), (b"content-type", b"application/json")]
    body = json.dumps({"x": [[1.0, 2.0, 3.0, 4.0]]}).encode()
    before = CALLS.count()
    response = raw_request(client, "/predict", [*headers, (name, value)], [body])
    refused, _ = check(response, before)
    assert None is refused
    assert 200 == response.status_code
