"""A watermarked tier through the guarded service: every output mode shows the mark."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard.watermark import Watermark, read_evidence

from ..conftest import forget_bentoml_metrics
from .wm_service import EVIDENCE_DIR, KEYS, RATE, SECRET, Marked, scores

ROWS = np.random.default_rng(5).uniform(0, 10, size=(300, 4)).round(3)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    forget_bentoml_metrics()
    with TestClient(Marked.to_asgi(), raise_server_exceptions=False) as c:
        yield c


def ask(client: TestClient, path: str, tier: str, rows: np.ndarray) -> np.ndarray:
    response = client.post(
        path,
        content=json.dumps({"x": rows.tolist()}),
        headers={"Authorization": f"Bearer {KEYS[tier]}", "content-type": "application/json"},
    )
    assert 200 == response.status_code, response.text
    return np.array(response.json())


def expected_labels() -> tuple[np.ndarray, np.ndarray]:
    """The answer each row should get: its mark label if chosen, else the model's top-1."""
    mark = Watermark(SECRET.encode(), rate=RATE, tier="t", writer=None)
    top = scores(ROWS).argmax(axis=1)
    labels = [mark.label_for(row, int(t), 5) for row, t in zip(ROWS, top, strict=True)]
    chosen = np.array([label is not None for label in labels])
    return np.array([t if lab is None else lab for lab, t in zip(labels, top, strict=True)]), chosen


@pytest.mark.parametrize("path", ["/predict", "/predict_async"])
@pytest.mark.parametrize("tier", ["public", "partner", "trusted"])
def test_every_tier_answers_the_mark_and_keeps_top1_elsewhere(
    client: TestClient, tier: str, path: str
) -> None:
    """label, top_k and full answers all show the watermark label on chosen rows only."""
    expected, chosen = expected_labels()
    assert 3 <= chosen.sum() <= 40
    answers = ask(client, path, tier, ROWS)
    assert expected.tolist() == answers.argmax(axis=1).tolist()
    full = scores(ROWS)
    if tier == "trusted":
        assert np.allclose(full[~chosen], answers[~chosen])


def test_evidence_file_keeps_the_chosen_inputs_with_the_principal(client: TestClient) -> None:
    """The tier's evidence holds the chosen inputs, each with the caller's id, only them."""
    expected, chosen = expected_labels()
    ask(client, "/predict", "partner", ROWS)
    kept = list(read_evidence([EVIDENCE_DIR / "partner.jsonl"]))
    assert sorted(map(tuple, ROWS[chosen].tolist())) == sorted(
        tuple(k.input.tolist()) for k in kept
    )
    assert {"user-partner"} == {k.principal for k in kept}
    by_input = {tuple(k.input.tolist()): k.label for k in kept}
    for row, label in zip(ROWS[chosen], expected[chosen], strict=True):
        assert label == by_input[tuple(row.tolist())]
