"""The guarded toy service through Starlette's TestClient: the whole HTTP contract."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from ..conftest import forget_bentoml_metrics
from .toy_service import CALLS, KEYS, Toy, scores

ROW = [1.0, 2.0, 0.5, 3.0]


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    forget_bentoml_metrics()
    with TestClient(Toy.to_asgi(), raise_server_exceptions=False) as c:
        yield c


def auth(tier: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tier]}"}


def post(client: TestClient, path: str, body: object, headers: dict[str, str]) -> object:
    return client.post(
        path, content=json.dumps(body), headers={**headers, "content-type": "application/json"}
    )


def assert_error(response: object, status: int, reason: str) -> dict[str, object]:
    assert status == response.status_code, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert reason == body["error"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.parametrize("path", ["/predict", "/predict_async"])
def test_tiers_get_their_output_detail(client: TestClient, path: str) -> None:
    """public gets a one-hot label, partner top-3 rounded, trusted full scores."""
    x = [ROW, [3.0, 0.0, 1.0, 0.0]]
    full = scores(np.array(x))
    public = np.array(post(client, path, {"x": x}, auth("public")).json())
    partner = np.array(post(client, path, {"x": x}, auth("partner")).json())
    trusted = np.array(post(client, path, {"x": x}, auth("trusted")).json())
    assert np.allclose(full, trusted)
    assert (public.sum(axis=1) == 1).all() and set(np.unique(public)) <= {0.0, 1.0}
    assert ((partner != 0).sum(axis=1) <= 3).all()
    assert np.allclose(partner, np.round(partner, 2))
    for out in (public, partner, trusted):
        assert (full.argmax(axis=1) == out.argmax(axis=1)).all()


def test_x_api_key_header_works(client: TestClient) -> None:
    """X-API-Key is accepted like Authorization: Bearer."""
    r = post(client, "/predict", {"x": [ROW]}, {"X-API-Key": KEYS["trusted"]})
    assert 200 == r.status_code


def test_no_key_is_401_with_challenge(client: TestClient) -> None:
    """No key: 401 unauthenticated with a WWW-Authenticate challenge; the model never runs."""
    CALLS.clear()
    r = post(client, "/predict", {"x": [ROW]}, {})
    assert_error(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert [] == CALLS


def test_wrong_key_is_401(client: TestClient) -> None:
    """An unknown key is refused and the key is not echoed back."""
    r = post(client, "/predict", {"x": [ROW]}, {"Authorization": "Bearer guess-123"})
    body = assert_error(r, 401, "unauthenticated")
    assert "guess-123" not in json.dumps(body)


def test_tier_may_not_call_endpoint(client: TestClient) -> None:
    """public may only call predict*: admin_scores is 403 forbidden."""
    CALLS.clear()
    assert_error(post(client, "/admin_scores", {"x": [ROW]}, auth("public")), 403, "forbidden")
    assert [] == CALLS
    assert 200 == post(client, "/admin_scores", {"x": [ROW]}, auth("trusted")).status_code


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ('{"x": [[1, 2]]}', "shape"),
        ('{"x": [[1, 2, "a", 4]]}', "dtype"),
        ('{"x": [[1, 2, NaN, 4]]}', "finite"),
        ('{"x": [[1, 2, 1e400, 4]]}', "finite"),
        ('{"x": [[1, 2, 1e308, 4]]}', "range"),
        ('{"x": [[1, 2, -3, 4]]}', "range"),
        ('{"x": []}', "shape"),
        ('{"x": {"a": 1}}', "shape"),
        ('{"x": [{"a": 1}]}', "dtype"),
        ('{"x": [[1, 2], [3]]}', "schema"),
        ('{"x": [[true, false, true, false]]}', "dtype"),
        ("{}", "schema"),
        ("not json", "schema"),
        ("[1, 2, 3, 4]", "schema"),
        ('{"x": null}', "shape"),
        ('{"x": 5}', "shape"),
    ],
)
def test_bad_input_is_422_and_never_reaches_the_model(
    client: TestClient, body: str, check: str
) -> None:
    """Each malformed body is a 422 invalid_input naming the check; the model does not run."""
    CALLS.clear()
    r = client.post(
        "/predict", content=body, headers={**auth("trusted"), "content-type": "application/json"}
    )
    got = assert_error(r, 422, "invalid_input")
    assert check == got["check"]
    assert [] == CALLS


def test_oversized_body_is_413_before_reading(client: TestClient) -> None:
    """A body over max_body_bytes is 413, by Content-Length or by counting a stream."""
    big = json.dumps({"x": [ROW] * 400})
    assert_error(
        client.post("/predict", content=big, headers=auth("trusted")), 413, "payload_too_large"
    )

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    assert_error(
        client.post("/predict", content=chunks(), headers=auth("trusted")), 413, "payload_too_large"
    )


def test_pickle_bodies_are_refused(client: TestClient) -> None:
    """BentoML's pickle serialisation is never accepted from outside."""
    r = client.post(
        "/predict",
        content=b"\x80\x04",
        headers={**auth("trusted"), "content-type": "application/vnd.bentoml+pickle"},
    )
    assert_error(r, 415, "unsupported_media_type")


def test_open_routes_need_no_key(client: TestClient) -> None:
    """Health, readiness and schema stay open; an unknown path still needs a key."""
    assert 200 == client.get("/livez").status_code
    assert 200 == client.get("/readyz").status_code
    assert 200 == client.get("/schema.json").status_code
    assert 401 == client.get("/not-a-route").status_code


@pytest.mark.parametrize("path", ["/predict_dict", "/predict_model"])
def test_dict_and_model_outputs_truncate_the_named_field(client: TestClient, path: str) -> None:
    """With scores_field, only that field is truncated and the rest is kept."""
    body = post(client, path, {"x": [ROW]}, auth("public")).json()
    assert "toy" == body["model"]
    assert [[0.0, 0.0, 0.0, 0.0, 1.0]] == body["scores"]


@pytest.mark.parametrize("path", ["/predict_stream", "/predict_astream"])
def test_streams_are_validated_before_the_first_chunk(client: TestClient, path: str) -> None:
    """Generator APIs answer a rejection as a JSON error, not a broken stream."""
    ok = post(client, path, {"x": [ROW, ROW]}, auth("public"))
    assert 200 == ok.status_code
    assert "4\n4\n" == ok.text
    CALLS.clear()
    bad = post(client, path, {"x": [[1.0, 2.0]]}, auth("public"))
    assert_error(bad, 422, "invalid_input")
    assert [] == CALLS


def test_model_errors_stay_500(client: TestClient) -> None:
    """A model that raises is a server error, not blamed on the caller."""
    r = post(client, "/crash", {"x": [ROW]}, auth("trusted"))
    assert 500 == r.status_code


def test_schema_is_unchanged_by_the_guard() -> None:
    """The guarded methods keep their signatures, so BentoML's schema is unchanged."""
    for name in ("predict", "predict_async", "predict_stream", "predict_astream"):
        method = Toy.apis[name]
        assert ["self", "x"] == list(inspect.signature(method.func).parameters)
        assert "x" in method.input_spec.model_fields
        # Stored once (BentoML asks for it on every call), and the function's own.
        original = inspect.unwrap(method.func)
        assert method.func.__signature__ == inspect.signature(original)
        assert inspect.signature(method.func) is method.func.__signature__
    assert inspect.iscoroutinefunction(Toy.apis["predict_async"].func)
    assert inspect.isgeneratorfunction(Toy.apis["predict_stream"].func)
    assert inspect.isasyncgenfunction(Toy.apis["predict_astream"].func)
