"""The HTTP contract of DESIGN.md against a real ``bentoml serve`` of the digits example.

One server runs for the whole session (see conftest.py); every test talks to
it over loopback with httpx, and checks the status and the JSON body.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import DigitsServer

pytestmark = pytest.mark.integration

MAX_BODY_BYTES = 262144  # input.max_body_bytes in examples/digits/invguard.yaml
MAX_ROWS = 256  # input.max_rows
N_FEATURES = 64
ZERO_ROW = [0.0] * N_FEATURES
JSON = {"content-type": "application/json"}
#: Statuses of the HTTP contract's JSON rejections.
CONTRACT_STATUSES = (401, 403, 413, 415, 422, 429)


# ---------------------------------------------------------------- helpers


def assert_rejection(
    response: httpx.Response, status: int, reason: str, check: str | None = None
) -> dict[str, Any]:
    """Status, content type and the ``{"error", "detail"[, "check", "position"]}`` body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    expected_keys = {"error", "detail"}
    if check is not None:
        expected_keys |= {"check", "position"}
    assert set(body) == expected_keys, body
    assert body["error"] == reason, body
    assert isinstance(body["detail"], str) and body["detail"], body
    if check is not None:
        assert body["check"] == check, body
        assert body["detail"].startswith(f"{check}:"), body
    return body


def raw_row(first: str) -> bytes:
    """A JSON body whose first value is the literal ``first`` (e.g. ``NaN``), rest zeros."""
    return b'{"x": [[' + first.encode() + b", 0" * (N_FEATURES - 1) + b"]]}"


def padded_body(size: int) -> bytes:
    """A valid one-row request padded with JSON whitespace to exactly ``size`` bytes."""
    body = json.dumps({"x": [ZERO_ROW]}).encode()
    assert len(body) < size
    return body[:-1] + b" " * (size - len(body)) + b"}"


def profile_probe(server: DigitsServer) -> list[list[float]]:
    """A row inside the policy's range (0..16) that the served reference profile refuses.

    Sets ``max_outside + 1`` features (those with the lowest upper bounds) just
    above their upper bound, every other feature at a value inside its bounds.
    """
    profile = json.loads((server.app_dir / "digits.profile.json").read_text())
    lower = np.asarray(profile["lower"])
    upper = np.asarray(profile["upper"])
    need = int(profile.get("max_outside", 0)) + 1
    row = np.clip(np.zeros(N_FEATURES), lower, upper)
    assert ((row >= 0) & (row <= 16)).all()
    targets = np.argsort(upper)[:need]
    assert (upper[targets] < 16).all(), "the profile has too few features with an upper < 16"
    row[targets] = np.minimum(16.0, np.floor(upper[targets]) + 1.0)
    assert (row[targets] > upper[targets]).all()
    return [row.tolist()]


@pytest.fixture(scope="module")
def accepted(digits_server: DigitsServer) -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits inside the served reference profile, and their labels.

    A few held-out digits lie outside the profile and would (rightly) get a 422.
    """
    from bento_invguard import Profile

    profile = Profile.load(digits_server.app_dir / "digits.profile.json")
    x, y = digits_server.x_test, digits_server.y_test
    ok = [i for i in range(len(y)) if profile.first_violation(x[i : i + 1]) is None]
    return x[ok], y[ok]


@pytest.fixture(scope="module")
def held_out(accepted: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Twelve held-out digits (the first of each class, then two more) and their labels."""
    x, y = accepted
    picks = [int(np.flatnonzero(y == digit)[0]) for digit in range(10)]
    picks += [i for i in range(len(y)) if i not in picks][:2]
    return x[picks], y[picks]


@pytest.fixture(scope="module")
def trusted_scores(digits_server: DigitsServer, held_out: tuple[np.ndarray, np.ndarray]) -> Any:
    """The trusted tier's full probabilities for the held-out digits."""
    response = digits_server.post("/predict", tier="trusted", json_body={"x": held_out[0].tolist()})
    assert response.status_code == 200, response.text
    return np.asarray(response.json(), dtype=np.float64)


# ---------------------------------------------------------------- 200 per tier


def test_trusted_gets_full_probabilities(
    digits_server: DigitsServer,
    held_out: tuple[np.ndarray, np.ndarray],
    trusted_scores: np.ndarray,
) -> None:
    """trusted: the model's untouched probabilities, rows summing to 1, argmax = model argmax."""
    x, labels = held_out
    expected = digits_server.model.predict_proba(x)
    assert trusted_scores.shape == (len(x), 10)
    np.testing.assert_allclose(trusted_scores, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(trusted_scores.sum(axis=1), 1.0, atol=1e-9)
    assert (trusted_scores > 0).all()
    assert (trusted_scores.argmax(axis=1) == expected.argmax(axis=1)).all()
    # a real model, not noise: nearly every held-out digit is classified right
    assert (trusted_scores.argmax(axis=1) == labels).sum() >= len(labels) - 2


def test_public_gets_one_hot_labels(
    digits_server: DigitsServer,
    held_out: tuple[np.ndarray, np.ndarray],
    trusted_scores: np.ndarray,
) -> None:
    """public: one-hot rows (a single 1.0, the rest 0.0) at the trusted argmax."""
    response = digits_server.post("/predict", tier="public", json_body={"x": held_out[0].tolist()})
    assert response.status_code == 200, response.text
    public = np.asarray(response.json(), dtype=np.float64)
    assert public.shape == trusted_scores.shape
    assert set(np.unique(public).tolist()) <= {0.0, 1.0}
    assert (public.sum(axis=1) == 1.0).all()
    assert (public.argmax(axis=1) == trusted_scores.argmax(axis=1)).all()


def test_partner_gets_top3_rounded(
    digits_server: DigitsServer,
    held_out: tuple[np.ndarray, np.ndarray],
    trusted_scores: np.ndarray,
) -> None:
    """partner: the 3 largest scores kept, rounded to 2 decimals, the rest 0; argmax kept."""
    response = digits_server.post("/predict", tier="partner", json_body={"x": held_out[0].tolist()})
    assert response.status_code == 200, response.text
    partner = np.asarray(response.json(), dtype=np.float64)
    assert partner.shape == trusted_scores.shape
    winners = trusted_scores.argmax(axis=1)
    for row, (got, full, winner) in enumerate(zip(partner, trusted_scores, winners, strict=True)):
        top3 = np.argsort(-full, kind="stable")[:3]
        dropped = np.setdiff1d(np.arange(10), top3)
        assert (got[dropped] == 0.0).all(), f"row {row}: scores outside the top 3 leak: {got}"
        # two decimals at most
        np.testing.assert_allclose(got, np.round(got, 2), atol=1e-12, err_msg=f"row {row}")
        # the winner is the strict maximum of what the partner sees
        assert got.argmax() == winner and (np.delete(got, winner) < got[winner]).all(), row
        rounded = np.round(full[top3], 2)
        if (np.delete(rounded, 0) < rounded[0]).all():
            # no tie after rounding: exactly the rounded top 3
            np.testing.assert_array_equal(got[top3], rounded, err_msg=f"row {row}")
        else:
            # a tie after rounding may move a runner-up down by one 0.01 step
            assert np.abs(got[top3] - full[top3]).max() <= 0.015 + 1e-12, row
    assert (partner.argmax(axis=1) == winners).all()


def test_x_api_key_header_is_accepted(
    digits_server: DigitsServer, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    """The same key in ``X-API-Key`` gets the same answer as in ``Authorization: Bearer``."""
    body = {"x": held_out[0][:3].tolist()}
    key = digits_server.key("public")
    bearer = digits_server.post(
        "/predict", json_body=body, headers={"Authorization": f"Bearer {key}"}
    )
    api_key = digits_server.post("/predict", json_body=body, headers={"X-API-Key": key})
    assert bearer.status_code == api_key.status_code == 200, (bearer.text, api_key.text)
    assert bearer.json() == api_key.json()


def test_trusted_may_call_logits(
    digits_server: DigitsServer, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    """trusted (endpoints ``*``) gets the raw logits from /logits."""
    x = held_out[0]
    response = digits_server.post("/logits", tier="trusted", json_body={"x": x.tolist()})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        np.asarray(response.json()), digits_server.model.logits(x), rtol=1e-9
    )


def test_tiers_do_not_leak_between_concurrent_requests(
    digits_server: DigitsServer, accepted: tuple[np.ndarray, np.ndarray]
) -> None:
    """Concurrent callers of different tiers each get their own tier's output detail."""
    rows = accepted[0][:36]
    results: list[tuple[str, int, np.ndarray]] = []
    lock = threading.Lock()

    def call(tiers: tuple[str, ...], offset: int) -> None:
        with httpx.Client(base_url=digits_server.base_url, timeout=15.0) as client:
            for i in range(offset, len(rows), 4):
                tier = tiers[i % 3]
                response = client.post(
                    "/predict",
                    content=json.dumps({"x": [rows[i].tolist()]}),
                    headers={**digits_server.auth(tier), **JSON},
                )
                with lock:
                    results.append((tier, response.status_code, np.asarray(response.json())))

    threads = [
        threading.Thread(target=call, args=(("public", "partner", "trusted"), n)) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == len(rows)
    for tier, status, scores in results:
        assert status == 200, (tier, scores)
        nonzero = int((scores > 0).sum())
        if tier == "public":
            assert nonzero == 1 and scores.max() == 1.0, (tier, scores)
        elif tier == "partner":
            assert nonzero <= 3 and np.allclose(scores, np.round(scores, 2)), (tier, scores)
        else:
            assert nonzero == 10 and abs(scores.sum() - 1.0) < 1e-9, (tier, scores)


# ---------------------------------------------------------------- 401 / 403


def test_no_key_is_401_with_www_authenticate(digits_server: DigitsServer) -> None:
    """No key at all: 401 ``unauthenticated`` with a ``WWW-Authenticate: Bearer`` challenge."""
    response = digits_server.post("/predict", json_body={"x": [ZERO_ROW]})
    assert_rejection(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Bearer ig_not-a-real-key"}, id="bearer"),
        pytest.param({"X-API-Key": "ig_not-a-real-key"}, id="x-api-key"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
    ],
)
def test_wrong_key_is_401(digits_server: DigitsServer, headers: dict[str, str]) -> None:
    """An unknown key (either header) or a non-Bearer scheme: 401 ``unauthenticated``."""
    response = digits_server.post("/predict", json_body={"x": [ZERO_ROW]}, headers=headers)
    assert_rejection(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_two_different_keys_are_401(digits_server: DigitsServer) -> None:
    """Bearer and X-API-Key carrying different (valid) keys: no identity, 401."""
    headers = {
        **digits_server.auth("trusted"),
        "X-API-Key": digits_server.key("public"),
    }
    response = digits_server.post("/predict", json_body={"x": [ZERO_ROW]}, headers=headers)
    assert_rejection(response, 401, "unauthenticated")


@pytest.mark.parametrize("tier", ["public", "partner"])
def test_lower_tiers_are_403_on_logits(digits_server: DigitsServer, tier: str) -> None:
    """public and partner may only call predict: /logits is 403 ``forbidden``."""
    response = digits_server.post("/logits", tier=tier, json_body={"x": [ZERO_ROW]})
    body = assert_rejection(response, 403, "forbidden")
    assert tier in body["detail"] and "logits" in body["detail"]


def test_unknown_route_fails_closed(digits_server: DigitsServer) -> None:
    """A route that is neither an API nor open still needs a key."""
    response = digits_server.client.get("/not-a-route")
    assert_rejection(response, 401, "unauthenticated")


# ---------------------------------------------------------------- 413 / 415


def test_body_over_limit_is_413(digits_server: DigitsServer) -> None:
    """One byte over max_body_bytes (declared Content-Length): 413 ``payload_too_large``."""
    response = digits_server.post(
        "/predict", tier="trusted", content=padded_body(MAX_BODY_BYTES + 1), headers=JSON
    )
    body = assert_rejection(response, 413, "payload_too_large")
    assert str(MAX_BODY_BYTES) in body["detail"]


def test_chunked_body_over_limit_is_413(digits_server: DigitsServer) -> None:
    """A chunked body (no Content-Length) is cut off once it passes the limit: 413."""
    big = padded_body(MAX_BODY_BYTES * 2)

    def chunks() -> Any:
        for start in range(0, len(big), 16384):
            yield big[start : start + 16384]

    response = digits_server.post("/predict", tier="trusted", content=chunks(), headers=JSON)
    assert_rejection(response, 413, "payload_too_large")


def test_body_at_limit_is_accepted(digits_server: DigitsServer) -> None:
    """A valid body of exactly max_body_bytes passes the size cap."""
    response = digits_server.post(
        "/predict", tier="trusted", content=padded_body(MAX_BODY_BYTES), headers=JSON
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "content_type",
    ["application/vnd.bentoml+pickle", "Application/VND.BentoML+Pickle; charset=binary"],
)
def test_pickle_is_415(digits_server: DigitsServer, content_type: str) -> None:
    """BentoML's internal pickle serialisation is refused from outside: 415."""
    response = digits_server.post(
        "/predict",
        tier="trusted",
        content=b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00N.",
        headers={"content-type": content_type},
    )
    assert_rejection(response, 415, "unsupported_media_type")


# ---------------------------------------------------------------- 422


# A batch over max_rows (256) is spent before it is checked, and every tier of the
# example allows fewer rows a second: it gets 429 (test_rate_limit_is_429_with_headers),
# and max_rows itself is tested in process (tests/validation).
INVALID_INPUTS = [
    pytest.param(json.dumps({"x": [[1.0] * 63]}).encode(), "shape", id="63-features"),
    pytest.param(json.dumps({"x": [[ZERO_ROW]]}).encode(), "shape", id="3d"),
    pytest.param(json.dumps({"x": []}).encode(), "shape", id="empty-batch"),
    pytest.param(raw_row("NaN"), "finite", id="nan"),
    pytest.param(raw_row("1e400"), "finite", id="1e400-is-inf"),
    pytest.param(raw_row("-Infinity"), "finite", id="minus-infinity"),
    pytest.param(json.dumps({"x": [[17.0, *ZERO_ROW[1:]]]}).encode(), "range", id="above-max"),
    pytest.param(json.dumps({"x": [[-1.0, *ZERO_ROW[1:]]]}).encode(), "range", id="below-min"),
    pytest.param(json.dumps({"x": [["8"] * 64]}).encode(), "dtype", id="strings"),
    pytest.param(json.dumps({"x": [[True] * 64]}).encode(), "dtype", id="booleans"),
    pytest.param(json.dumps({"y": [ZERO_ROW]}).encode(), "schema", id="missing-field"),
    pytest.param(b'{"x": [[0, 1, 2', "schema", id="malformed-json"),
    pytest.param(b"[1, 2, 3]", "schema", id="not-an-object"),
]


@pytest.mark.parametrize(("content", "check"), INVALID_INPUTS)
def test_invalid_input_is_422(digits_server: DigitsServer, content: bytes, check: str) -> None:
    """Bad input: 422 ``invalid_input`` whose ``check`` names the failed check."""
    response = digits_server.post("/predict", tier="trusted", content=content, headers=JSON)
    assert_rejection(response, 422, "invalid_input", check)


def test_profile_outlier_is_422(digits_server: DigitsServer) -> None:
    """A row inside 0..16 but outside the reference profile: 422 with check ``profile``."""
    response = digits_server.post(
        "/predict", tier="trusted", json_body={"x": profile_probe(digits_server)}
    )
    assert_rejection(response, 422, "invalid_input", "profile")


def test_validation_runs_for_every_tier(digits_server: DigitsServer) -> None:
    """The public tier gets the same 422 as trusted (validation does not depend on tier)."""
    response = digits_server.post("/predict", tier="public", content=raw_row("NaN"), headers=JSON)
    assert_rejection(response, 422, "invalid_input", "finite")


# ---------------------------------------------------------------- 429


def tightest_limit(server: DigitsServer, tier: str) -> int | None:
    """The smallest number of rows any one window of the tier's rate_limit allows."""
    from limits import parse_many

    spec = (server.policy().get("tiers", {}).get(tier) or {}).get("rate_limit")
    if not spec:
        return None
    return min(item.amount for item in parse_many(spec))


def test_rate_limit_is_429_with_headers(
    digits_server: DigitsServer, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    """One request with more rows than the public tier's tightest window: 429 ``rate_limited``.

    Rows spend the budget, so a single request goes over without depending on
    timing; the answer carries ``Retry-After`` and the ``RateLimit-*`` headers,
    and the refused request leaves room for a one-row request right after.
    """
    limit = tightest_limit(digits_server, "public")
    if limit is None:
        pytest.skip("the example policy sets no rate_limit for the public tier")
    if limit + 1 > MAX_ROWS:
        pytest.skip(
            f"the public limit ({limit} rows) is above max_rows; one request cannot pass it"
        )
    rows = np.resize(held_out[0], (limit + 1, N_FEATURES))
    key = {"X-API-Key": digits_server.burst_keys["public"]}
    response = digits_server.post("/predict", json_body={"x": rows.tolist()}, headers=key)
    assert_rejection(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 0, response.headers
    assert int(response.headers["ratelimit-limit"]) == limit, response.headers
    assert int(response.headers["ratelimit-remaining"]) >= 0, response.headers
    assert int(response.headers["ratelimit-reset"]) >= 0, response.headers

    response = digits_server.post("/predict", json_body={"x": rows[:1].tolist()}, headers=key)
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- never 5xx


def _chunked(data: bytes) -> Any:
    yield data[: len(data) // 2]
    yield data[len(data) // 2 :]


MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("empty body", {"content": b""}),
    ("null body", {"content": b"null"}),
    ("x null", {"content": b'{"x": null}'}),
    ("x scalar", {"content": b'{"x": 3}'}),
    ("x string", {"content": b'{"x": "zeros"}'}),
    ("x object", {"content": b'{"x": {"a": 1}}'}),
    ("ragged rows", {"content": json.dumps({"x": [ZERO_ROW, [0.0] * 3]}).encode()}),
    ("row of objects", {"content": b'{"x": [{"a": 1}]}'}),
    ("nested lists", {"content": json.dumps({"x": [[[1, 2]] * 64]}).encode()}),
    ("mixed number and string", {"content": json.dumps({"x": [[*ZERO_ROW[:63], "1"]]}).encode()}),
    ("huge integer", {"content": b'{"x": [[' + b"9" * 400 + b", 0" * 63 + b"]]}"}),
    ("1e308 in range check", {"content": raw_row("1e308")}),
    ("Infinity", {"content": raw_row("Infinity")}),
    ("deep nesting", {"content": b'{"x": ' + b"[" * 3000 + b"]" * 3000 + b"}"}),
    ("invalid utf-8", {"content": b'{"x": "\xff\xfe"}'}),
    ("trailing garbage", {"content": json.dumps({"x": [ZERO_ROW]}).encode() + b"}}"}),
    ("duplicate field", {"content": b'{"x": [[1]], "x": "a"}'}),
    ("extra field", {"content": json.dumps({"x": [ZERO_ROW], "debug": True}).encode()}),
    ("chunked malformed", {"content_factory": lambda: _chunked(b'{"x": [[NaN, ')}),
    ("octet-stream", {"content": b"\x00\x01\x02", "content_type": "application/octet-stream"}),
    (
        "form-urlencoded",
        {"content": b"x=1&x=2", "content_type": "application/x-www-form-urlencoded"},
    ),
    ("text/plain garbage", {"content": b"hello", "content_type": "text/plain"}),
    ("multipart", {"files": {"x": ("x.json", b"[[1, 2]]", "application/json")}}),
    ("no content-type", {"content": b"{not json", "content_type": None}),
    ("pickle", {"content": b"\x80\x04N.", "content_type": "application/vnd.bentoml+pickle"}),
    ("over limit", {"content": padded_body(MAX_BODY_BYTES + 10)}),
]


@pytest.mark.parametrize("path", ["/predict", "/logits"])
@pytest.mark.parametrize("tier", [None, "public", "trusted"])
def test_malformed_requests_never_5xx(
    digits_server: DigitsServer, path: str, tier: str | None
) -> None:
    """Bad input never produces a 5xx: every malformed request gets a JSON rejection."""
    failures = []
    for name, spec in MALFORMED:
        headers = {} if tier is None else digits_server.auth(tier)
        content_type = spec.get("content_type", "application/json")
        if content_type is not None and "files" not in spec:
            headers["content-type"] = content_type
        content = spec["content_factory"]() if "content_factory" in spec else spec.get("content")
        response = digits_server.client.post(
            path, content=content, files=spec.get("files"), headers=headers
        )
        if response.status_code >= 500:
            failures.append(f"{name}: {response.status_code} {response.text[:200]}")
            continue
        if response.status_code == 200:
            continue  # a lenient parse of a still-valid body (e.g. an extra field)
        try:
            body = response.json()
        except ValueError:
            failures.append(f"{name}: {response.status_code} non-JSON body {response.text[:80]!r}")
            continue
        contract = response.status_code in CONTRACT_STATUSES and isinstance(body, dict)
        if not contract or not {"error", "detail"} <= set(body):
            failures.append(f"{name}: {response.status_code} {body}")
    assert not failures, "\n".join(failures)


def test_wrong_methods_are_not_5xx(digits_server: DigitsServer) -> None:
    """Other HTTP methods on API routes are refused without a server error."""
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        for headers in ({}, digits_server.auth("trusted")):
            response = digits_server.client.request(method, "/predict", headers=headers)
            assert 400 <= response.status_code < 500, (method, response.status_code)


# ---------------------------------------------------------------- open routes


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics"])
def test_health_and_metrics_need_no_key(digits_server: DigitsServer, path: str) -> None:
    """Health, readiness and metrics stay open without a key."""
    response = digits_server.client.get(path)
    assert response.status_code == 200, response.text
    if path == "/metrics":
        assert "bentoml_" in response.text
