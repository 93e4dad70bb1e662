"""BentoML's sharp edges under the guard (in process).

- pickle request bodies: BentoML unpickles them on non-entry services and
  only refuses them on the entry one; a guarded service refuses them (415)
  before the body is read, whatever the casing or the parameters;
- ``**kwargs`` APIs: BentoML merges a body's ``kwargs`` into the call after
  setting the request context, so the body could replace ``ctx``; the guard's
  identity never comes from the body, and a body naming ``ctx`` is a 422;
- batchable APIs: refused at startup by ``protect``, and refused (fail
  closed, the model never runs) by ``guard`` alone, which cannot see the flag
  when it is applied;
- self-calls (``self.other_api(...)`` goes over HTTP to the service itself,
  without the caller's key) and in-process ``bentoml.depends`` dependencies:
  neither lets a caller past the guard.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import GuardConfigError, Policy, generate_key, guard, protect

from ..conftest import forget_bentoml_metrics, policy_dict
from .asgi import raw_request
from .contract import rejection

KEYS = {tier: generate_key() for tier in ("public", "partner", "trusted")}
POLICY = Policy.model_validate(
    policy_dict(
        KEYS,
        audit={"sink": "none"},
        tiers={
            "public": {"output": "label", "endpoints": ["predict*", "relay*", "front*"]},
            "partner": {"output": "top_k", "k": 2},
            "trusted": {"output": "full"},
        },
    )
)
ROW = [[1.0, 2.0, 0.5, 3.0]]
WEIGHTS = np.arange(20, dtype=np.float64).reshape(4, 5) / 10.0
MODEL_RUNS: list[str] = []
UNPICKLED: list[str] = []


def scores(x: Any) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) @ WEIGHTS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def mark_unpickled(what: str) -> list[list[float]]:
    UNPICKLED.append(what)
    return ROW


class PickleBomb:
    """Unpickling it runs ``mark_unpickled``: proof that a body was deserialised."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (mark_unpickled, ("bomb",))


def is_label(out: Any) -> bool:
    arr = np.asarray(out)
    return bool(set(np.unique(arr)) <= {0.0, 1.0} and (arr.sum(axis=1) == 1).all())


def client_for(service: Any, **kwargs: Any) -> TestClient:
    forget_bentoml_metrics()
    return TestClient(service.to_asgi(**kwargs), raise_server_exceptions=False)


def post(client: TestClient, path: str, body: Any, tier: str | None = None) -> Any:
    headers = {"content-type": "application/json"}
    if tier is not None:
        headers["X-API-Key"] = KEYS[tier]
    return client.post(path, content=json.dumps(body), headers=headers)


# ---------------------------------------------------------------- services
@protect(POLICY)
@bentoml.service(name="edges")
class Edges:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        MODEL_RUNS.append("predict")
        return scores(x)

    @bentoml.api
    def secret(self, x: np.ndarray) -> np.ndarray:
        """Trusted only (public may call predict, relay* and front*)."""
        MODEL_RUNS.append("secret")
        return scores(x)

    @bentoml.api
    def relay_proxy(self, x: np.ndarray) -> np.ndarray:
        """Calls another API the BentoML way: over HTTP to this same service."""
        return np.asarray(self.secret(x))

    @bentoml.api
    async def relay_proxy_async(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(await self.to_async.secret(x))

    @bentoml.api
    def relay_local(self, x: np.ndarray) -> np.ndarray:
        """Calls another API in process, as the same caller."""
        return np.asarray(self.secret.local(x))

    @bentoml.api
    def relay_local_scaled(self, x: np.ndarray) -> np.ndarray:
        """Hands the other API input the policy refuses (values above max)."""
        return np.asarray(self.secret.local(np.asarray(x) * 100.0))

    @bentoml.api
    def predict_kw(self, x: np.ndarray, ctx: bentoml.Context, **kwargs: Any) -> np.ndarray:
        MODEL_RUNS.append(f"predict_kw ctx={type(ctx).__name__} kwargs={sorted(kwargs)}")
        ctx.response.headers["x-ctx-ok"] = "1"
        return scores(x)


@bentoml.service(name="plain")
class Plain:
    """No guard: what BentoML does by itself."""

    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        MODEL_RUNS.append("plain")
        return scores(x)


@protect(POLICY)
@bentoml.service(name="backend")
class Backend:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        MODEL_RUNS.append("backend")
        return scores(x)


@protect(POLICY)
@bentoml.service(name="guarded_front")
class GuardedFront:
    backend = bentoml.depends(Backend)

    @bentoml.api
    def front(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.backend.predict(x))

    @bentoml.api
    def front_scaled(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.backend.predict(np.asarray(x) * 100.0))


@bentoml.service(name="open_front")
class OpenFront:
    """An unguarded entry service in front of a guarded dependency."""

    backend = bentoml.depends(Backend)

    @bentoml.api
    def front(self, x: np.ndarray) -> Any:
        return np.asarray(self.backend.predict(x)).tolist()


@pytest.fixture(scope="module")
def edges() -> Iterator[TestClient]:
    with client_for(Edges) as client:
        yield client


@pytest.fixture(autouse=True)
def _clean() -> None:
    MODEL_RUNS.clear()
    UNPICKLED.clear()


# ---------------------------------------------------------------- pickle
PICKLE_TYPES = [
    "application/vnd.bentoml+pickle",
    "application/vnd.bentoml+pickle; charset=binary",
    "APPLICATION/VND.BENTOML+PICKLE",
    "  application/vnd.bentoml+pickle  ",
]


@pytest.mark.parametrize("is_main", [True, False], ids=["entry", "dependency"])
@pytest.mark.parametrize("ctype", PICKLE_TYPES)
def test_pickle_bodies_are_refused_before_they_are_read(is_main: bool, ctype: str) -> None:
    """415 unsupported_media_type, nothing unpickled, the model not run; also on a
    service that is not the entry one, where BentoML itself would unpickle."""
    body = pickle.dumps({"x": PickleBomb()})
    with client_for(Edges, is_main=is_main) as client:
        response = client.post(
            "/predict", content=body, headers={"X-API-Key": KEYS["trusted"], "content-type": ctype}
        )
    refused = rejection(response)
    assert refused is not None and "unsupported_media_type" == refused["error"]
    assert 415 == response.status_code
    assert [] == UNPICKLED and [] == MODEL_RUNS


def test_pickle_in_a_second_content_type_header_is_refused(edges: TestClient) -> None:
    """Two Content-Type headers, JSON first: BentoML reads the first, the guard refuses both."""
    body = pickle.dumps({"x": PickleBomb()})
    headers = [
        (b"x-api-key", KEYS["trusted"].encode()),
        (b"content-type", b"application/json"),
        (b"content-type", b"application/vnd.bentoml+pickle"),
    ]
    refused = rejection(raw_request(edges, "/predict", headers, [body]))
    assert refused is not None and "unsupported_media_type" == refused["error"]
    assert [] == UNPICKLED and [] == MODEL_RUNS


def test_without_the_guard_bentoml_unpickles_bodies_of_a_dependency() -> None:
    """The control experiment: why the guard refuses pickle itself."""
    body = pickle.dumps({"x": PickleBomb()})
    with client_for(Plain, is_main=False) as client:
        response = client.post(
            "/predict", content=body, headers={"content-type": "application/vnd.bentoml+pickle"}
        )
    assert 200 == response.status_code
    assert ["bomb"] == UNPICKLED


# ---------------------------------------------------------------- **kwargs and ctx
@pytest.mark.parametrize(
    "smuggled",
    [
        {"ctx": "spoof"},
        {"ctx": {"request": {"headers": {"x-api-key": "k"}}}},
        {"self": 1},
        {"func": "x"},
        {"x": [[99.0, 0.0, 0.0, 0.0]]},
    ],
    ids=["ctx-string", "ctx-object", "self", "func", "x-override"],
)
def test_kwargs_body_cannot_replace_the_context_or_the_input(
    edges: TestClient, smuggled: dict[str, Any]
) -> None:
    """A body ``kwargs`` object naming ctx, self, func or x: 422, the model never runs."""
    response = post(edges, "/predict_kw", {"x": ROW, "kwargs": smuggled}, "trusted")
    refused = rejection(response)
    assert refused is not None and "invalid_input" == refused["error"], response.text
    assert [] == MODEL_RUNS


@pytest.mark.parametrize(
    "spoof",
    [
        {"ctx": {"tier": "trusted"}},
        {"invguard": {"tier": "trusted", "principal": "user-trusted"}},
        {"tier": "trusted", "principal": "user-trusted"},
        {"context": "trusted"},
    ],
)
def test_identity_never_comes_from_the_body(edges: TestClient, spoof: dict[str, Any]) -> None:
    """Body fields named like the guard's context or BentoML's: a public caller still gets
    labels only, and the API gets BentoML's real context."""
    # Only a ``ctx`` inside ``kwargs`` would replace BentoML's context: refused (422).
    # Everything else is an unknown field the API ignores: answered, as labels.
    refused_forms = {"kwargs"} if "ctx" in spoof else set()
    for form, body in (
        ("top", {**spoof, "x": ROW, "kwargs": {}}),
        ("kwargs", {"x": ROW, "kwargs": spoof}),
    ):
        MODEL_RUNS.clear()
        response = post(edges, "/predict_kw", body, "public")
        refused = rejection(response)
        assert (refused is not None) == (form in refused_forms), (form, response.text)
        if refused is None:
            assert is_label(response.json()), response.text
            assert "1" == response.headers["x-ctx-ok"]
            assert MODEL_RUNS and "ctx=ServiceContext" in MODEL_RUNS[0]
        else:
            assert "invalid_input" == refused["error"] and [] == MODEL_RUNS


# ---------------------------------------------------------------- batchable
def test_protect_refuses_batchable_apis_naming_them() -> None:
    with pytest.raises(GuardConfigError) as info:

        @protect(POLICY)
        @bentoml.service
        class Batched:
            @bentoml.api(batchable=True)
            def classify(self, x: np.ndarray) -> np.ndarray:
                return scores(x)

    message = str(info.value)
    assert "API 'classify' is batchable" in message
    assert "merges requests from different callers" in message
    assert "batchable=False" in message


@bentoml.service(name="guard_only_batched")
class GuardOnlyBatched:
    @bentoml.api(batchable=True)
    @guard(POLICY)
    def predict(self, x: np.ndarray) -> np.ndarray:
        MODEL_RUNS.append("batched")
        return scores(x)


def test_guard_alone_refuses_a_batchable_api_and_fails_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """@guard under @bentoml.api(batchable=True) cannot see the flag when applied; the
    batcher would serve every merged caller as the first one (a keyless request was
    answered). It refuses at the first call instead: no answer, the model never runs."""
    with client_for(GuardOnlyBatched) as client:
        answers = [post(client, "/predict", {"x": ROW}, tier) for tier in ("public", None)]
    assert [500, 500] == [r.status_code for r in answers]
    assert all("0.0" not in r.text for r in answers)
    assert [] == MODEL_RUNS
    assert "API 'predict' is batchable" in caplog.text


# ---------------------------------------------------------------- self-calls
@pytest.mark.parametrize("path", ["/relay_proxy", "/relay_proxy_async"])
@pytest.mark.parametrize("tier", ["public", "trusted"])
def test_self_calls_through_bentomls_proxy_are_refused_in_the_contract(
    edges: TestClient, path: str, tier: str
) -> None:
    """self.secret(...) is a keyless HTTP request to the service itself: refused (403), the
    calling query answered with that refusal in the contract's form, secret never run."""
    response = post(edges, path, {"x": ROW}, tier)
    refused = rejection(response)
    assert refused is not None and "forbidden" == refused["error"], response.text
    assert "self-proxy" in refused["detail"] and "self.secret.local(...)" in refused["detail"]
    assert [] == MODEL_RUNS


def test_local_self_calls_run_as_the_same_caller(edges: TestClient) -> None:
    """self.secret.local(...) runs under the caller's identity: the caller's tier decides
    the output (public: labels), and the inner call's input is validated too."""
    public = post(edges, "/relay_local", {"x": ROW}, "public")
    assert 200 == public.status_code, public.text
    assert is_label(public.json())
    trusted = post(edges, "/relay_local", {"x": ROW}, "trusted")
    assert np.allclose(scores(ROW), trusted.json())
    MODEL_RUNS.clear()
    scaled = rejection(post(edges, "/relay_local_scaled", {"x": ROW}, "trusted"))
    assert scaled is not None and "range" == scaled.get("check"), scaled
    assert [] == MODEL_RUNS
    nobody = rejection(post(edges, "/relay_local", {"x": ROW}))
    assert nobody is not None and "unauthenticated" == nobody["error"]


def test_public_cannot_call_the_relayed_api_directly(edges: TestClient) -> None:
    refused = rejection(post(edges, "/secret", {"x": ROW}, "public"))
    assert refused is not None and "forbidden" == refused["error"]
    assert [] == MODEL_RUNS


# ---------------------------------------------------------------- bentoml.depends
def test_guarded_dependency_sees_the_entry_callers_identity() -> None:
    """Entry and dependency both guarded, in process: the dependency truncates for the
    caller's tier, validates what the entry service hands it, and no key is no answer."""
    with client_for(GuardedFront) as client:
        public = post(client, "/front", {"x": ROW}, "public")
        partner = post(client, "/front", {"x": ROW}, "partner")
        assert 200 == public.status_code and is_label(public.json()), public.text
        assert 200 == partner.status_code and (np.asarray(partner.json()) != 0).sum() <= 2
        MODEL_RUNS.clear()
        scaled = rejection(post(client, "/front_scaled", {"x": ROW}, "trusted"))
        nobody = rejection(post(client, "/front", {"x": ROW}))
    assert scaled is not None and "range" == scaled.get("check"), scaled
    assert nobody is not None and "unauthenticated" == nobody["error"]
    assert [] == MODEL_RUNS


def test_unguarded_entry_does_not_open_a_guarded_dependency() -> None:
    """A guarded dependency behind an unguarded entry service authenticates the entry's
    request: without a key no scores come back and the dependency's model never runs."""
    with client_for(OpenFront) as client:
        nobody = post(client, "/front", {"x": ROW})
        public = post(client, "/front", {"x": ROW}, "public")
    refused = rejection(nobody)
    assert refused is not None and "unauthenticated" == refused["error"], nobody.text
    assert 200 == public.status_code and is_label(public.json()), public.text
    assert ["backend"] == MODEL_RUNS  # the public call only
