"""A guarded toy service whose tiers are all watermarked (rate 5 %), for in-process tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bentoml
import numpy as np

from bento_invguard import Policy, generate_key, protect

from ..conftest import policy_dict

KEYS = {tier: generate_key() for tier in ("public", "partner", "trusted")}
RATE = 0.05
SECRET = "in-process-test-secret"
EVIDENCE_DIR = Path(tempfile.mkdtemp(prefix="invguard-wm-"))
os.environ["INVGUARD_TEST_WM_SECRET"] = SECRET
MARK = {"rate": RATE, "secret": "${INVGUARD_TEST_WM_SECRET}", "evidence": str(EVIDENCE_DIR)}
MARK["evidence"] += "/{tier}.jsonl"
POLICY = Policy.model_validate(
    policy_dict(
        KEYS,
        tiers={
            "public": {"output": "label", "watermark": MARK},
            "partner": {"output": "top_k", "k": 3, "decimals": 2, "watermark": MARK},
            "trusted": {"output": "full", "watermark": MARK},
        },
        input={"shape": [4], "min": 0.0, "max": 10.0, "max_body_bytes": 1_000_000},
        monitor={"enabled": False},
        audit={"sink": "none"},
    )
)
WEIGHTS = np.arange(20, dtype=np.float64).reshape(4, 5) / 10.0


def scores(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) @ WEIGHTS
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@protect(POLICY)
@bentoml.service
class Marked:
    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return scores(x)

    @bentoml.api
    async def predict_async(self, x: np.ndarray) -> np.ndarray:
        return scores(x)
