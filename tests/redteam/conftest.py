"""Fixtures for the red-team tests: the digits data, a mock endpoint, a reference file.

The real-server tests reuse :func:`tests.end_to_end.conftest.digits_server`
(imported below, so pytest finds it here too: a server of their own when the
whole suite runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from benchmarks.support.serving import EXAMPLE_DIR, load_module

from bento_invguard import truncate

from ..end_to_end.conftest import digits_server

__all__ = ["Digits", "MockEndpoint", "digits_server"]

_model = load_module(EXAMPLE_DIR / "model.py", "invguard_redteam_digits_model")


@dataclass(frozen=True)
class Digits:
    """The example's model trained as examples/digits does, and its held-out split."""

    model: Any
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="session")
def digits() -> Digits:
    x_train, x_test, y_train, y_test = _model.load_split()
    return Digits(_model.SoftmaxModel(*_model.fit_weights(x_train, y_train)), x_test, y_test)


@pytest.fixture(scope="session")
def reference_file(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The held-out split as ``reference.npz`` (x, y): data the model was not trained on."""
    path = tmp_path_factory.mktemp("reference") / "reference.npz"
    np.savez(path, x=digits.x_test, y=digits.y_test)
    return path


@dataclass
class MockEndpoint:
    """An in-process endpoint for ``httpx.MockTransport``: the model and scripted refusals.

    ``script`` maps a request number (1-based) to ``(status, reason, headers)``;
    ``mode`` is the output mode; ``degrade_after`` switches to labels after
    that many requests.
    """

    model: Any
    mode: str = "full"
    script: dict[int, tuple[int, str, dict[str, str]]] = field(default_factory=dict)
    degrade_after: int | None = None
    requests: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.requests in self.script:
            status, reason, headers = self.script[self.requests]
            return httpx.Response(
                status, json={"error": reason, "detail": "scripted"}, headers=headers
            )
        x = np.asarray(body["x"], dtype=np.float64).reshape(len(body["x"]), -1)
        mode = self.mode
        if self.degrade_after is not None and self.requests > self.degrade_after:
            mode = "label"
        return httpx.Response(200, json=truncate(self.model.predict_proba(x), mode).tolist())

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self), base_url="http://model.test")


@pytest.fixture
def endpoint(digits: Digits) -> Callable[..., MockEndpoint]:
    """``endpoint(mode="full", script={...})``: a fresh mock endpoint."""

    def make(**kwargs: Any) -> MockEndpoint:
        return MockEndpoint(digits.model, **kwargs)

    return make
