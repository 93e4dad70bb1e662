"""Suspect models for :func:`verify_copy`: a served endpoint, or a Python function."""

from __future__ import annotations

import importlib
import json
from typing import Any

import httpx
import numpy as np

from .verify import Predictor


class SuspectError(Exception):
    """The suspect could not be loaded or did not answer."""


def url_predictor(
    url: str,
    *,
    field: str = "x",
    key: str | None = None,
    scores_field: str | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
) -> Predictor:
    """Post ``{field: rows}`` as JSON to ``url`` (a BentoML endpoint), read the scores.

    ``key`` is sent as ``Authorization: Bearer``; ``scores_field`` names the
    field of a JSON object answer that holds the scores.
    """
    http = client or httpx.Client(timeout=timeout)
    headers = {"content-type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"

    def predict(rows: np.ndarray) -> np.ndarray:
        body = json.dumps({field: rows.tolist()}, allow_nan=False)
        try:
            response = http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SuspectError(f"{url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise SuspectError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        try:
            answer: Any = response.json()
        except ValueError:
            raise SuspectError(f"{url}: the answer is not JSON") from None
        if scores_field is not None:
            if not isinstance(answer, dict) or scores_field not in answer:
                raise SuspectError(f"{url}: the answer has no field {scores_field!r}")
            answer = answer[scores_field]
        return np.asarray(answer, dtype=np.float64)

    return predict


def function_predictor(spec: str) -> Predictor:
    """Import ``module:function`` (the module on ``sys.path``), a callable on rows."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise SuspectError(f"{spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SuspectError(f"{spec!r}: cannot import {module_name}: {exc}") from None
    target: Any = module
    for part in name.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise SuspectError(f"{spec!r}: {module_name} has no {name}")
    if not callable(target):
        raise SuspectError(f"{spec!r}: {name} is not callable")

    def predict(rows: np.ndarray) -> np.ndarray:
        return np.asarray(target(rows))

    return predict
