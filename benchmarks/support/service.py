"""The guarded service in process: policy, keys, the BentoML service and its oracle.

A :class:`KeyRing` holds many fresh keys per tier (``public``: labels,
``trusted``: full scores). :func:`guarded_policy` is the one place where the
policy, and in particular its ``monitor`` section, is built. :func:`open_service`
builds a BentoML service with ``@protect(policy)`` around the model's
``predict_proba`` and serves it through Starlette's ``TestClient``, so every
query goes through the whole HTTP path (middleware, validation, monitor,
hardening). :class:`GuardedOracle` and :class:`BareOracle` answer
``ask(key, rows) -> Reply`` with the same interface, guarded and unguarded.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import bentoml
import numpy as np

from bento_invguard import Policy, Profile, generate_key, hash_key, protect, truncate

from .datasets import Dataset, LinearSoftmax

TIER_OUTPUT = {"public": "label", "trusted": "full"}
_SERVICES = itertools.count()


@dataclass(frozen=True)
class Reply:
    """One answer: HTTP status, the ``(n, classes)`` array on a 200, else the refusal reason."""

    status: int
    answer: np.ndarray | None
    reason: str  # "ok", or the JSON error (with its check: "invalid_input:profile")


class Oracle(Protocol):
    """Anything that answers ``ask(key, rows)``."""

    def ask(self, key: str, rows: np.ndarray) -> Reply:
        """Send ``rows`` with ``key``; the reply."""
        ...


class KeyRing:
    """Fresh keys per tier; :meth:`take` hands each key out once per :meth:`reset`.

    >>> ring = KeyRing({"public": 2})
    >>> a, b = ring.take("public"), ring.take("public")
    >>> a != b and ring.tier(a) == "public"
    True
    """

    def __init__(self, counts: dict[str, int]) -> None:
        self.keys = {tier: [generate_key() for _ in range(n)] for tier, n in counts.items()}
        self._tier = {key: tier for tier, keys in self.keys.items() for key in keys}
        self._next = dict.fromkeys(counts, 0)

    def entries(self) -> list[dict[str, str]]:
        """The policy's key entries ``{id, sha256, tier}`` (digests only)."""
        return [
            {"id": f"{tier}-{i:05d}", "sha256": hash_key(key), "tier": tier}
            for tier, keys in self.keys.items()
            for i, key in enumerate(keys)
        ]

    def take(self, tier: str) -> str:
        """A key of ``tier`` not handed out since the last reset."""
        i = self._next[tier]
        if i >= len(self.keys[tier]):
            raise RuntimeError(f"out of fresh {tier} keys ({i}): give the key ring more")
        self._next[tier] = i + 1
        return self.keys[tier][i]

    def taken(self, tier: str) -> int:
        """Keys of ``tier`` handed out since the last reset."""
        return self._next[tier]

    def reset(self) -> None:
        """Every key is fresh again (use with a fresh service, whose monitor knows none)."""
        self._next = dict.fromkeys(self._next, 0)

    def tier(self, key: str) -> str:
        """The tier of a key."""
        return self._tier[key]


def guarded_policy(
    dataset: Dataset, profile_path: Path, keys: list[dict[str, str]], **monitor_overrides: Any
) -> Policy:
    """THE policy of the benchmark; ``monitor_overrides`` go into its ``monitor`` section.

    No rate limit (what is measured is detection), input checks with the
    reference profile, no audit trail. Monitor settings not given keep the
    product's defaults (``on_detect``: ``silent``); a field the installed
    policy model does not know fails here, naming the field.
    """
    data: dict[str, Any] = {
        "keys": keys,
        "keys_from": {"env": None},
        "tiers": {
            "public": {"output": TIER_OUTPUT["public"], "endpoints": ["predict"]},
            "trusted": {"output": TIER_OUTPUT["trusted"], "endpoints": ["predict"]},
        },
        "input": {
            "shape": [dataset.features],
            "dtype": "float",
            "min": dataset.low,
            "max": dataset.high,
            "max_rows": 256,
            "max_body_bytes": 16 * 1024 * 1024,
            "profile": str(profile_path),
        },
        "audit": {"sink": "none"},
        "monitor": dict(monitor_overrides),
    }
    return Policy.model_validate(data)


def fit_profile(dataset: Dataset, folder: Path) -> Path:
    """``Profile.fit(x_train)`` saved in ``folder``; its path."""
    return Profile.fit(dataset.x_train).save(folder / f"{dataset.name}.profile.json")


def forget_bentoml_metrics() -> None:
    """Unregister BentoML's Prometheus collectors so another service app can be built.

    prometheus_client has no public way to list a registry's collectors, so this
    reads its private map; a benchmark-only helper, never used by the library.
    """
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(name.startswith("bentoml_") for name in names):
            REGISTRY.unregister(collector)


def _service_class(policy: Policy, model: LinearSoftmax) -> Any:
    @protect(policy)
    @bentoml.service(name=f"invguard_detection_{next(_SERVICES)}")
    class Guarded:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return model.predict_proba(x)

    return Guarded


class GuardedOracle:
    """``ask(key, rows)`` through the guarded service's HTTP path (a ``TestClient``)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def ask(self, key: str, rows: np.ndarray) -> Reply:
        """POST ``rows`` to ``/predict`` with ``key``; 200 -> the array, else the reason."""
        body = json.dumps({"x": np.asarray(rows, dtype=np.float64).tolist()})
        response = self._client.post(
            "/predict",
            content=body,
            headers={"Authorization": f"Bearer {key}", "content-type": "application/json"},
        )
        if response.status_code == 200:
            return Reply(200, np.asarray(response.json(), dtype=np.float64), "ok")
        try:
            data = response.json()
            reason = str(data.get("error", "unknown"))
            if "check" in data:
                reason = f"{reason}:{data['check']}"
        except ValueError:
            reason = "unparsed"
        return Reply(response.status_code, None, reason)


class BareOracle:
    """The unguarded model answering as the key's tier would: the baseline."""

    def __init__(self, model: LinearSoftmax, ring: KeyRing) -> None:
        self._model = model
        self._ring = ring

    def ask(self, key: str, rows: np.ndarray) -> Reply:
        """The model's answer for ``rows``, truncated to the key's tier output."""
        return Reply(200, bare_answer(self._model, rows, self._ring.tier(key)), "ok")


def bare_answer(model: LinearSoftmax, rows: np.ndarray, tier: str) -> np.ndarray:
    """What the unguarded model answers a caller of ``tier`` for ``rows``."""
    return truncate(model.predict_proba(np.asarray(rows, dtype=np.float64)), TIER_OUTPUT[tier])


@contextmanager
def open_service(policy: Policy, model: LinearSoftmax) -> Iterator[GuardedOracle]:
    """A fresh guarded service (fresh monitor state) and its oracle, for one ``with`` block."""
    with warnings.catch_warnings():  # starlette's notice about httpx in its TestClient
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    forget_bentoml_metrics()
    service = _service_class(policy, model)
    with TestClient(service.to_asgi(), raise_server_exceptions=False) as client:
        yield GuardedOracle(client)
