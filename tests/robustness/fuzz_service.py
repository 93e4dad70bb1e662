"""A guarded service for generated bad input: every API kind, ``ctx`` and ``**kwargs``.

Every model call is recorded with the input it received, so a test can say
that a rejected request never reached the model and that the model only
ever saw input the policy allows.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any

import bentoml
import numpy as np

from bento_invguard import Policy, generate_key, protect

from ..conftest import policy_dict

KEYS = {tier: generate_key() for tier in ("public", "partner", "trusted")}
#: Rows of 4 values in [0, 10], at most 1024 rows, bodies up to 4096 bytes (policy_dict);
#: no monitor (generated traffic is one principal probing on purpose), no audit files.
POLICY = Policy.model_validate(
    policy_dict(
        KEYS,
        monitor={"enabled": False},
        audit={"sink": "none"},
        tiers={
            "public": {"output": "label", "endpoints": ["predict", "predict_*"]},
            "partner": {"output": "top_k", "k": 2, "rate_limit": "1000000/hour"},
            "trusted": {"output": "full"},
        },
    )
)
ROW_SHAPE = (4,)
LOW, HIGH = 0.0, 10.0
WEIGHTS = np.arange(20, dtype=np.float64).reshape(4, 5) / 10.0


class ModelCalls:
    """What the model saw, per call (thread-safe: sync APIs run in worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inputs: list[tuple[str, Any]] = []

    def record(self, api: str, x: Any) -> None:
        with self._lock:
            self.inputs.append((api, x))

    def count(self) -> int:
        with self._lock:
            return len(self.inputs)

    def since(self, start: int) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self.inputs[start:])


CALLS = ModelCalls()


def scores(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) @ WEIGHTS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _require_context(ctx: Any) -> None:
    # A spoofed context would make the model code fail (a 500): the guard must stop it first.
    if not isinstance(ctx, bentoml.Context):
        raise TypeError(f"ctx is {type(ctx).__name__}, not BentoML's context")
    ctx.response.headers["x-ctx-ok"] = "1"


@protect(POLICY)
@bentoml.service(name="fuzzed")
class Fuzzed:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        CALLS.record("predict", x)
        return scores(x)

    @bentoml.api
    async def predict_async(self, x: np.ndarray) -> np.ndarray:
        CALLS.record("predict_async", x)
        return scores(x)

    @bentoml.api
    def predict_stream(self, x: np.ndarray) -> Generator[str, None, None]:
        CALLS.record("predict_stream", x)
        for row in scores(x):
            yield f"{int(np.argmax(row))}\n"

    @bentoml.api
    async def predict_astream(self, x: np.ndarray) -> AsyncGenerator[str, None]:
        CALLS.record("predict_astream", x)
        for row in scores(x):
            yield f"{int(np.argmax(row))}\n"

    @bentoml.api
    def predict_kw(self, x: np.ndarray, ctx: bentoml.Context, **kwargs: Any) -> np.ndarray:
        _require_context(ctx)
        CALLS.record("predict_kw", x)
        return scores(x)

    @bentoml.api
    async def predict_akw(self, x: np.ndarray, ctx: bentoml.Context, **kwargs: Any) -> np.ndarray:
        _require_context(ctx)
        CALLS.record("predict_akw", x)
        return scores(x)


PATHS = tuple(f"/{name}" for name in Fuzzed.apis)
KWARGS_PATHS = ("/predict_kw", "/predict_akw")


def allowed_input(x: Any) -> bool:
    """What the policy lets through to the model."""
    arr = np.asarray(x)
    return (
        arr.ndim == 2
        and arr.shape[1:] == ROW_SHAPE
        and 1 <= arr.shape[0] <= 1024
        and arr.dtype.kind in "fiu"
        and bool(np.isfinite(arr).all())
        and bool((arr >= LOW).all() and (arr <= HIGH).all())
    )
