"""The shared view behind a real guarded app (in process): key rotation gets silent answers."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import Policy, Profile, generate_key, hash_key, protect

from ..conftest import forget_bentoml_metrics
from .conftest import MODEL, X_TEST, predicted

KEYS = [generate_key() for _ in range(80)]


def digits_stream_service(profile_path: Path, name: str) -> Any:
    """The same model as a stream of one class per row, under the default policy."""
    policy = digits_policy(profile_path)

    @protect(policy)
    @bentoml.service(name=name)
    class DigitsStream:
        @bentoml.api
        def predict(self, x: np.ndarray) -> Generator[str, None, None]:
            for row in MODEL.predict_proba(np.asarray(x, dtype=float)):
                yield f"{int(np.argmax(row))}\n"

    return DigitsStream


def digits_service(profile_path: Path, name: str, **monitor: Any) -> Any:
    """The digits model behind @protect: 80 trusted keys (full scores), the fitted profile."""
    policy = digits_policy(profile_path, **monitor)

    @protect(policy)
    @bentoml.service(name=name)
    class Digits:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            scores: np.ndarray = MODEL.predict_proba(np.asarray(x, dtype=float))
            return scores

    return Digits


def digits_policy(profile_path: Path, **monitor: Any) -> Policy:
    """80 trusted keys (full scores), the digits' input box and fitted profile."""
    return Policy.model_validate(
        {
            "keys": [
                {"id": f"k{i}", "sha256": hash_key(k), "tier": "trusted"}
                for i, k in enumerate(KEYS)
            ],
            "keys_from": {"env": None},
            "tiers": {"trusted": {"output": "full"}},
            "input": {
                "shape": [64],
                "dtype": "float",
                "min": 0.0,
                "max": 16.0,
                "profile": str(profile_path),
            },
            "monitor": monitor,
        }
    )


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory: pytest.TempPathFactory, profile: Profile) -> Path:
    return profile.save(tmp_path_factory.mktemp("profile") / "digits.profile.json")


def serve(service: Any) -> Iterator[TestClient]:
    forget_bentoml_metrics()
    with TestClient(service.to_asgi(), raise_server_exceptions=False) as client:
        yield client


def post(client: TestClient, key: str, rows: np.ndarray) -> Any:
    body = json.dumps({"x": rows.tolist()})
    return client.post("/predict", content=body, headers={"Authorization": f"Bearer {key}"})


def walk(n: int) -> np.ndarray:
    """From a held-out 2 towards a held-out 0 in steps of about 0.3 (L2): the model's
    answer turns from 2 to 0 at step 26; the profile refuses none of them."""
    start, end = X_TEST[0], X_TEST[1]
    steps = int(np.linalg.norm(end - start) / 0.3) + 1
    path: np.ndarray = start + (end - start) * np.linspace(0.0, 1.0, steps)[:, None]
    return path[:n]


def test_a_chain_sent_with_a_new_key_per_row_gets_silent_answers(
    profile_path: Path, thresholds: Any
) -> None:
    """Default policy (on_detect: silent): 60 steps, each from another key, are all 200; from
    the cluster_size-th step on the answer is a one-hot at the first step's class, also past
    the step where the model's own answer changes."""
    rows = walk(60)
    model_classes = predicted(rows)
    assert {2, 0} == set(model_classes)  # the walk crosses the decision boundary
    for client in serve(digits_service(profile_path, "digits_silent")):
        answers = [post(client, KEYS[i], rows[i : i + 1]) for i in range(60)]
    assert [200] * 60 == [a.status_code for a in answers]
    scores = np.array([a.json()[0] for a in answers])
    c = thresholds.cluster_size
    np.testing.assert_allclose(scores[:c], MODEL.predict_proba(rows[:c]), rtol=1e-6)
    silent = np.zeros((60 - c, 10))
    silent[:, model_classes[0]] = 1.0
    assert silent.tolist() == scores[c:].tolist()


def test_a_chain_sent_with_a_new_key_per_row_is_refused_under_refuse(
    profile_path: Path, thresholds: Any
) -> None:
    """on_detect: refuse: the first cluster_size steps are answered, every later one is
    403 blocked, whatever key sends it."""
    rows = walk(30)
    for client in serve(digits_service(profile_path, "digits_refusing", on_detect="refuse")):
        answers = [post(client, KEYS[i], rows[i : i + 1]) for i in range(30)]
    c = thresholds.cluster_size
    assert [200] * c + [403] * (30 - c) == [a.status_code for a in answers]
    assert {"blocked"} == {a.json()["error"] for a in answers[c:]}


def test_a_chain_sent_to_a_streaming_api_is_refused_whatever_on_detect_says(
    profile_path: Path, thresholds: Any
) -> None:
    """A stream has no whole answer to make silent: under the default policy a chain over
    fresh keys gets 403 blocked from the cluster_size-th step on (its rows are kept)."""
    rows = walk(20)
    for client in serve(digits_stream_service(profile_path, "digits_stream")):
        answers = [post(client, KEYS[i], rows[i : i + 1]) for i in range(20)]
    c = thresholds.cluster_size
    assert [200] * c + [403] * (20 - c) == [a.status_code for a in answers]
    assert {"blocked"} == {a.json()["error"] for a in answers[c:]}


def test_held_out_digits_from_twenty_keys_are_answered_their_own_class(
    profile_path: Path,
) -> None:
    """150 held-out digits, sent by 20 keys in turn (some two rows a request): every one is
    answered with the model's own scores, none silenced."""
    for client in serve(digits_service(profile_path, "digits_natural")):
        got = []
        for i in range(0, 150, 3):
            got.append(post(client, KEYS[i % 20], X_TEST[i : i + 1]))
            got.append(post(client, KEYS[(i + 1) % 20], X_TEST[i + 1 : i + 3]))
    assert [200] * 100 == [r.status_code for r in got]
    scores = np.vstack([np.array(r.json()) for r in got])
    np.testing.assert_allclose(scores, MODEL.predict_proba(X_TEST[:150]), rtol=1e-6)
    assert predicted(X_TEST[:150]) == scores.argmax(axis=1).tolist()
