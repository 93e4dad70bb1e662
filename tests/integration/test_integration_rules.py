"""How guard and protect attach to BentoML, and what they refuse at startup."""

from __future__ import annotations

import json
from collections.abc import Iterator

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import GuardConfigError, Policy, Unauthenticated, guard, local_caller, protect

from ..conftest import forget_bentoml_metrics, policy_dict
from .toy_service import KEYS, scores

POLICY = Policy.model_validate(policy_dict(KEYS))


@bentoml.service
class GuardOnly:
    """@guard without @protect: the wrapper authenticates from BentoML's request."""

    @bentoml.api
    @guard(POLICY)
    def predict(self, x: np.ndarray) -> np.ndarray:
        return scores(x)

    @bentoml.api
    def unguarded(self, x: np.ndarray) -> np.ndarray:
        return scores(x)


@pytest.fixture(scope="module")
def guard_only() -> Iterator[TestClient]:
    forget_bentoml_metrics()
    with TestClient(GuardOnly.to_asgi(), raise_server_exceptions=False) as c:
        yield c


def test_guard_alone_authenticates_and_truncates(guard_only: TestClient) -> None:
    """A guarded method on an unprotected service still needs a key and truncates."""
    body = json.dumps({"x": [[1.0, 2.0, 0.5, 3.0]]})
    no_key = guard_only.post("/predict", content=body)
    assert 401 == no_key.status_code
    assert "unauthenticated" == no_key.json()["error"]
    public = guard_only.post("/predict", content=body, headers={"X-API-Key": KEYS["public"]})
    assert [[0.0, 0.0, 0.0, 0.0, 1.0]] == public.json()
    bad = guard_only.post(
        "/predict", content='{"x": [[1, 2]]}', headers={"X-API-Key": KEYS["public"]}
    )
    assert 422 == bad.status_code
    assert "shape" == bad.json()["check"]
    assert 200 == guard_only.post("/unguarded", content=body).status_code
    # the middleware's rule: one header sent twice with two different keys is no identity
    two = guard_only.post(
        "/predict",
        content=body,
        headers=[("X-API-Key", KEYS["public"]), ("X-API-Key", KEYS["trusted"])],
    )
    assert 401 == two.status_code, two.text


def test_local_calls_fail_closed_without_local_caller() -> None:
    """Calling a guarded API in process with no request and no local_caller is refused."""
    svc = GuardOnly()
    x = np.array([[1.0, 2.0, 0.5, 3.0]])
    with pytest.raises(Unauthenticated, match="local_caller"):
        svc.predict(x)
    with local_caller(tier="partner", principal="batch-job") as ctx:
        out = svc.predict(x)
    assert "batch-job" == ctx.principal
    assert (out != 0).sum() <= 3
    assert np.argmax(out) == np.argmax(scores(x))
    with local_caller(tier="nope"), pytest.raises(GuardConfigError, match="no tier named"):
        svc.predict(x)


def test_protect_refuses_batchable_apis() -> None:
    """Batchable APIs would mix callers in one call: refused with a clear reason."""
    with pytest.raises(GuardConfigError, match="batchable"):

        @protect(POLICY)
        @bentoml.service
        class Batched:
            @bentoml.api(batchable=True)
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x


def test_protect_refuses_tasks() -> None:
    """Tasks run after the response: refused."""
    with pytest.raises(GuardConfigError, match="task"):

        @protect(POLICY)
        @bentoml.service
        class Tasked:
            @bentoml.task
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x


def test_decorators_in_the_wrong_place_are_explained() -> None:
    """protect under @bentoml.service, or guard above @bentoml.api, says where it goes."""
    with pytest.raises(GuardConfigError, match="above @bentoml.service"):

        @protect(POLICY)
        class NotAService:
            pass

    with pytest.raises(GuardConfigError, match="under @bentoml.api"):

        class Wrong:
            @guard(POLICY)
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x


def test_input_argument_must_exist() -> None:
    """An input_arg naming no argument is a startup error listing the arguments."""
    with pytest.raises(GuardConfigError, match=r"no argument named 'features'.*arguments: x"):

        class Svc:
            @guard(POLICY, input_arg="features")
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x


def test_protect_loads_policy_relative_to_the_caller(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing policy file is a startup error naming the file."""
    from bento_invguard import PolicyError

    with pytest.raises(PolicyError, match="does-not-exist.yaml: file not found"):
        protect("does-not-exist.yaml")
    monkeypatch.delenv("INVGUARD_POLICY", raising=False)
    with pytest.raises(GuardConfigError, match="INVGUARD_POLICY"):
        protect()


@protect(POLICY)
@bentoml.service
class Backend:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return scores(x)


@protect(POLICY)
@bentoml.service
class Frontend:
    backend = bentoml.depends(Backend)

    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.backend.predict(x))


def test_in_process_dependency_keeps_the_callers_identity() -> None:
    """A bentoml.depends dependency called in process sees the caller's tier."""
    forget_bentoml_metrics()
    with TestClient(Frontend.to_asgi(), raise_server_exceptions=False) as client:
        body = json.dumps({"x": [[1.0, 2.0, 0.5, 3.0]]})
        r = client.post("/predict", content=body, headers={"X-API-Key": KEYS["partner"]})
        assert 200 == r.status_code, r.text
        out = np.array(r.json())
        assert (out != 0).sum() <= 3
        assert 401 == client.post("/predict", content=body).status_code


def test_schema_errors_do_not_flood_the_error_log(caplog: pytest.LogCaptureFixture) -> None:
    """A malformed body is a 422, not an ERROR traceback in the server log."""
    forget_bentoml_metrics()
    from .toy_service import Toy

    with TestClient(Toy.to_asgi(), raise_server_exceptions=False) as client:
        caplog.clear()
        r = client.post("/predict", content="{not json", headers={"X-API-Key": KEYS["public"]})
        assert 422 == r.status_code
        # BentoML fails before the API is called (no multipart boundary): also a 422,
        # and also no traceback
        r = client.post(
            "/predict",
            content=b"garbage",
            headers={"X-API-Key": KEYS["public"], "Content-Type": "multipart/form-data"},
        )
        assert 422 == r.status_code, r.text
    assert not [
        rec for rec in caplog.records if rec.levelno >= 40 and "Exception on" in rec.getMessage()
    ]


def test_malformed_key_headers_are_recorded_as_refusals() -> None:
    """Two different X-API-Key headers: a 401 whose span records a rejection, not an allow."""
    from bento_invguard import protect

    from ..telemetry.helpers import make_otel
    from .toy_service import POLICY

    forget_bentoml_metrics()
    otel = make_otel()

    @protect(POLICY, tracer_provider=otel.tracer_provider)
    @bentoml.service(name="twokeys")
    class TwoKeys:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return x

    with TestClient(TwoKeys.to_asgi(), raise_server_exceptions=False) as client:
        r = client.post(
            "/predict",
            content=json.dumps({"x": [[1.0, 2.0, 0.5, 3.0]]}),
            headers=[("X-API-Key", KEYS["public"]), ("X-API-Key", KEYS["partner"])],
        )
    assert 401 == r.status_code
    (span,) = [s for s in otel.spans.get_finished_spans() if s.name.startswith("invguard")]
    assert span.attributes is not None
    assert "reject" == span.attributes.get("invguard.decision"), dict(span.attributes)


def test_a_guard_without_a_profile_warns_at_startup_what_is_not_caught(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No input.profile: one WARNING names what goes uncaught and how to fit one."""
    from bento_invguard.integration.pipeline import GuardPipeline

    policy = Policy.model_validate({"tiers": {"public": {"output": "label"}}})
    with caplog.at_level("WARNING", logger="bento_invguard"):
        GuardPipeline(policy)
    text = caplog.text
    assert "no reference profile" in text and "invguard profile fit" in text
