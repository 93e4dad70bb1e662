"""The output contract: (n, classes) scores or a named scores field, refused otherwise."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import bentoml
import numpy as np
import pytest
from pydantic import BaseModel
from starlette.testclient import TestClient

from bento_invguard import GuardConfigError, Policy, protect
from bento_invguard.hardening.contract import check_output_annotation

from ..conftest import forget_bentoml_metrics, policy_dict
from ..integration.toy_service import KEYS, scores

POLICY = Policy.model_validate(policy_dict(KEYS))


@protect(POLICY)
@bentoml.service
class Labels:
    """A classifier that returns what ``model.predict`` returns: one label per row."""

    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(scores(x), axis=1)

    @bentoml.api
    def predict_rows(self, x: np.ndarray) -> np.ndarray:
        return scores(np.concatenate([x, x]))  # twice as many rows as were sent


@pytest.fixture(scope="module")
def labels() -> Iterator[TestClient]:
    forget_bentoml_metrics()
    with TestClient(Labels.to_asgi(), raise_server_exceptions=False) as c:
        yield c


def call(client: TestClient, path: str, rows: list[list[float]], tier: str) -> Any:
    return client.post(
        path,
        content=json.dumps({"x": rows}),
        headers={"Authorization": f"Bearer {KEYS[tier]}", "content-type": "application/json"},
    )


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("tier", ["public", "trusted"])
def test_an_api_returning_labels_is_refused_with_a_reason_that_says_what_to_change(
    labels: TestClient, rows: int, tier: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One label per row is no (n, classes) scores: every tier gets 500 internal_error
    whose detail names the API and the expected shape (never a label dressed as a
    score, never 503 storage_unavailable), and the log names the API and the control."""
    x = [[1.0, 2.0, 0.5, 3.0], [3.0, 0.0, 1.0, 0.0], [0.0, 9.0, 0.0, 0.0]][:rows]
    with caplog.at_level(logging.ERROR, logger="bento_invguard"):
        answer = call(labels, "/predict", x, tier)
    assert 500 == answer.status_code, answer.text
    body = answer.json()
    assert "internal_error" == body["error"]
    assert "API 'predict'" in body["detail"]
    assert f"shape ({rows},)" in body["detail"]
    assert "(n, classes)" in body["detail"] and "predict_proba" in body["detail"]
    logged = [r.getMessage() for r in caplog.records]
    assert any("API 'predict'" in m and "output control" in m for m in logged), logged


def test_scores_with_another_row_count_than_the_input_are_refused(labels: TestClient) -> None:
    """Scores for 2 rows when 1 was sent: refused as a misconfigured output."""
    answer = call(labels, "/predict_rows", [[1.0, 2.0, 0.5, 3.0]], "public")
    assert 500 == answer.status_code, answer.text
    assert "internal_error" == answer.json()["error"]
    assert "2 rows of scores for 1 input rows" in answer.json()["detail"]


class Scored(BaseModel):
    scores: list[list[float]]


class Labelled(BaseModel):
    label: int


def _returning(annotation: Any) -> Any:
    def api(self: Any, x: np.ndarray) -> None: ...

    api.__annotations__["return"] = annotation
    return api


@pytest.mark.parametrize(
    ("annotation", "field"),
    [(np.ndarray, None), (Scored, "scores"), (dict[str, Any], "scores"), (list[list[float]], None)],
)
def test_annotations_that_hold_scores_pass_at_startup(annotation: Any, field: str | None) -> None:
    """An ndarray, a pydantic model with the field, a dict with a field, nested lists."""
    assert "scores" == check_output_annotation(_returning(annotation), "predict", field)


@pytest.mark.parametrize("annotation", [Any, list])
def test_annotations_that_tell_nothing_wait_for_the_first_call(annotation: Any) -> None:
    """Any or a bare list: the contract is checked on the first call."""
    assert "unknown" == check_output_annotation(_returning(annotation), "predict", None)


@pytest.mark.parametrize(
    ("annotation", "field", "says"),
    [
        (list[int], None, "class labels?"),
        (int, None, "(n, classes)"),
        (Scored, None, "no scores_field"),
        (dict[str, Any], None, "no scores_field"),
        (Labelled, "scores", "no field 'scores' (its fields: label)"),
        (np.ndarray, "scores", "scores_field='scores' is set"),
    ],
)
def test_annotations_that_break_the_contract_are_refused_naming_the_api(
    annotation: Any, field: str | None, says: str
) -> None:
    """The refusal names the API, what is wrong, and (for a field) where to set it."""
    with pytest.raises(GuardConfigError) as refused:
        check_output_annotation(_returning(annotation), "classify", field)
    assert "API 'classify'" in str(refused.value)
    assert says in str(refused.value)


def test_protect_refuses_a_pydantic_output_without_scores_field_at_startup() -> None:
    """At decoration time, not at the first call."""
    with pytest.raises(GuardConfigError, match=r"API 'predict_model' returns Scored"):

        @protect(POLICY)
        @bentoml.service
        class NoField:
            @bentoml.api
            def predict_model(self, x: np.ndarray) -> Scored:
                return Scored(scores=scores(x).tolist())
