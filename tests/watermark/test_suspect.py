"""url_predictor: what it sends to a suspect endpoint and how it reads the answer."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from bento_invguard.watermark import SuspectError, url_predictor


def test_sends_rows_with_the_key_and_reads_a_scores_field() -> None:
    """JSON {field: rows} with a Bearer key; the named field of the answer is the scores."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        rows = json.loads(request.content)["pixels"]
        return httpx.Response(200, json={"scores": [[0.1, 0.9]] * len(rows)})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        predict = url_predictor(
            "http://suspect/predict", field="pixels", key="k1", scores_field="scores", client=client
        )
        out = predict(np.zeros((3, 2)))
    assert (3, 2) == out.shape
    assert "Bearer k1" == seen[0].headers["authorization"]


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(403, json={"error": "forbidden"}), "HTTP 403"),
        (httpx.Response(200, content=b"<html>"), "not JSON"),
        (httpx.Response(200, json=[[1.0]]), "no field 'scores'"),
    ],
)
def test_bad_answers_are_suspect_errors(response: httpx.Response, message: str) -> None:
    """Refusals, non-JSON and a missing scores field raise SuspectError, named."""
    with httpx.Client(transport=httpx.MockTransport(lambda _: response)) as client:
        predict = url_predictor("http://s/p", scores_field="scores", client=client)
        with pytest.raises(SuspectError, match=message):
            predict(np.zeros((1, 2)))
