"""protect()'s per-API options: skip (unguarded, key still required) and apis={...}."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import bentoml
import numpy as np
import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from bento_invguard import GuardConfigError, Policy, protect

from ..conftest import forget_bentoml_metrics, policy_dict
from .toy_service import KEYS, scores

POLICY = Policy.model_validate(policy_dict(KEYS))
ROW = [1.0, 2.0, 0.5, 3.0]


class Scored(BaseModel):
    scores: list[list[float]]
    model: str = "toy"


@protect(
    POLICY,
    skip=["info", "health_info"],
    apis={"predict_dict": {"scores_field": "scores"}, "predict_model": {"scores_field": "scores"}},
    open_paths=["/health_info"],
)
@bentoml.service
class Mixed:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return scores(x)

    @bentoml.api
    def predict_dict(self, x: np.ndarray) -> dict[str, Any]:
        return {"scores": scores(x).tolist(), "model": "toy"}

    @bentoml.api
    def predict_model(self, x: np.ndarray) -> Scored:
        return Scored(scores=scores(x).tolist())

    @bentoml.api
    def info(self) -> dict[str, str]:
        return {"model": "toy", "classes": "5"}

    @bentoml.api
    def health_info(self) -> dict[str, str]:
        return {"ok": "yes"}


@pytest.fixture(scope="module")
def mixed() -> Iterator[TestClient]:
    forget_bentoml_metrics()
    with TestClient(Mixed.to_asgi(), raise_server_exceptions=False) as c:
        yield c


def post(client: TestClient, path: str, body: object, tier: str | None = None) -> Any:
    headers = {"content-type": "application/json"}
    if tier is not None:
        headers["Authorization"] = f"Bearer {KEYS[tier]}"
    return client.post(path, content=json.dumps(body), headers=headers)


def test_an_ndarray_api_and_field_apis_are_each_truncated(mixed: TestClient) -> None:
    """The ndarray API and the two field APIs serve side by side, each hardened."""
    expected = np.eye(5)[[int(np.argmax(scores(np.array([ROW]))))]].tolist()
    assert expected == post(mixed, "/predict", {"x": [ROW]}, "public").json()
    as_dict = post(mixed, "/predict_dict", {"x": [ROW]}, "public").json()
    assert {"scores": expected, "model": "toy"} == as_dict
    as_model = post(mixed, "/predict_model", {"x": [ROW]}, "public").json()
    assert {"scores": expected, "model": "toy"} == as_model


def test_a_skipped_api_still_needs_a_key(mixed: TestClient) -> None:
    """Unguarded is not open: no key, 401; a key of any tier, the API's own answer."""
    refused = post(mixed, "/info", {})
    assert 401 == refused.status_code
    assert "unauthenticated" == refused.json()["error"]
    answered = post(mixed, "/info", {}, "public")
    assert 200 == answered.status_code, answered.text
    assert {"model": "toy", "classes": "5"} == answered.json()


def test_a_skipped_api_listed_in_open_paths_is_open(mixed: TestClient) -> None:
    """open_paths opens a skipped API to callers without a key."""
    assert {"ok": "yes"} == post(mixed, "/health_info", {}).json()


def test_an_api_without_input_names_skip_in_its_refusal() -> None:
    """No input argument and not skipped: refused at startup, pointing at skip."""
    with pytest.raises(GuardConfigError, match=r"API 'info'.*protect\(\.\.\., skip=\['info'\]\)"):

        @protect(POLICY)
        @bentoml.service
        class NoInput:
            @bentoml.api
            def info(self) -> dict[str, str]:
                return {}


def test_a_service_wide_scores_field_refuses_an_ndarray_api_at_startup() -> None:
    """scores_field for all, one API returns an ndarray: named at startup, with the fix."""
    with pytest.raises(GuardConfigError, match=r"API 'predict' returns .*apis=\{'predict'"):

        @protect(POLICY, scores_field="scores")
        @bentoml.service
        class AllField:
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return scores(x)


def test_a_scores_field_the_pydantic_model_lacks_is_refused_at_startup() -> None:
    """apis={...} names a field the output model does not have."""
    with pytest.raises(GuardConfigError, match=r"API 'predict_model'.*no field 'probs'"):

        @protect(POLICY, apis={"predict_model": {"scores_field": "probs"}})
        @bentoml.service
        class WrongField:
            @bentoml.api
            def predict_model(self, x: np.ndarray) -> Scored:
                return Scored(scores=scores(x).tolist())


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"skip": ["nope"]}, "no API 'nope'"),
        ({"apis": {"nope": {}}}, "no API 'nope'"),
        ({"apis": {"predict": {"scores": "x"}}}, "unknown option 'scores'"),
        ({"skip": ["predict"], "apis": {"predict": {}}}, "both in skip and in apis"),
    ],
)
def test_per_api_options_that_name_nothing_are_refused(options: Any, says: str) -> None:
    """A typo in skip or apis is a startup error, never a silently guarded API."""
    with pytest.raises(GuardConfigError, match=says):

        @protect(POLICY, **options)
        @bentoml.service
        class Typo:
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return scores(x)
