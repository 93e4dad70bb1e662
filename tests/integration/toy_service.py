"""A small guarded service for in-process tests: every API kind, dict and model outputs."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

import bentoml
import numpy as np
from pydantic import BaseModel

from bento_invguard import Policy, generate_key, guard, protect

from ..conftest import policy_dict

KEYS = {tier: generate_key() for tier in ("public", "partner", "trusted")}
POLICY = Policy.model_validate(policy_dict(KEYS))
WEIGHTS = np.arange(20, dtype=np.float64).reshape(4, 5) / 10.0
CALLS: list[str] = []


def scores(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) @ WEIGHTS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class Scored(BaseModel):
    scores: list[list[float]]
    model: str = "toy"


@protect(POLICY)
@bentoml.service
class Toy:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        CALLS.append("predict")
        return scores(x)

    @bentoml.api
    async def predict_async(self, x: np.ndarray) -> np.ndarray:
        CALLS.append("predict_async")
        return scores(x)

    @bentoml.api
    def predict_stream(self, x: np.ndarray) -> Generator[str, None, None]:
        CALLS.append("predict_stream")
        for row in scores(x):
            yield f"{int(np.argmax(row))}\n"

    @bentoml.api
    async def predict_astream(self, x: np.ndarray) -> AsyncGenerator[str, None]:
        CALLS.append("predict_astream")
        for row in scores(x):
            yield f"{int(np.argmax(row))}\n"

    @bentoml.api
    @guard(POLICY, scores_field="scores")
    def predict_dict(self, x: np.ndarray) -> dict[str, Any]:
        CALLS.append("predict_dict")
        return {"scores": scores(x).tolist(), "model": "toy"}

    @bentoml.api
    @guard(POLICY, scores_field="scores")
    def predict_model(self, x: np.ndarray) -> Scored:
        CALLS.append("predict_model")
        return Scored(scores=scores(x).tolist())

    @bentoml.api
    def admin_scores(self, x: np.ndarray) -> np.ndarray:
        CALLS.append("admin_scores")
        return scores(x)

    @bentoml.api
    def crash(self, x: np.ndarray) -> np.ndarray:
        CALLS.append("crash")
        raise RuntimeError("the model failed")
