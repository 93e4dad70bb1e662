"""Shared fixtures: keys, policies, the digits example's data, and an isolated BentoML home."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# BentoML reads BENTOML_HOME at import: keep tests out of the user's model store.
os.environ.setdefault("BENTOML_HOME", tempfile.mkdtemp(prefix="invguard-bentoml-home-"))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

from bento_invguard import Policy, Profile, generate_key, hash_key

REPO = Path(__file__).resolve().parent.parent
TIERS = ("public", "partner", "trusted")


@pytest.fixture(scope="session")
def tier_keys() -> dict[str, str]:
    """One fresh raw API key per tier."""
    return {tier: generate_key() for tier in TIERS}


def policy_dict(tier_keys: dict[str, str], **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "keys": [
            {"id": f"user-{tier}", "sha256": hash_key(key), "tier": tier}
            for tier, key in tier_keys.items()
        ],
        "keys_from": {"env": None},
        "tiers": {
            "public": {"output": "label", "endpoints": ["predict", "predict_*"]},
            "partner": {"output": "top_k", "k": 3, "decimals": 2},
            "trusted": {"output": "full"},
        },
        "input": {"shape": [4], "dtype": "float", "min": 0.0, "max": 10.0, "max_body_bytes": 4096},
    }
    data.update(overrides)
    return data


@pytest.fixture
def policy(tier_keys: dict[str, str]) -> Policy:
    return Policy.model_validate(policy_dict(tier_keys))


@pytest.fixture
def clean_env() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


DIGITS_DIR = REPO / "examples" / "digits"


def digits_module(name: str) -> object:
    """Import a module of the digits example (model, train, service)."""
    import importlib
    import sys

    if str(DIGITS_DIR) not in sys.path:
        sys.path.insert(0, str(DIGITS_DIR))
    return importlib.import_module(name)


def forget_bentoml_metrics() -> None:
    """Unregister BentoML's Prometheus collectors so another app can be built in-process.

    BentoML registers its request metrics in the process-wide registry when an
    app serves its first request; a second service app in the same test
    process would otherwise fail with DuplicateTimeseries.
    """
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(name.startswith("bentoml_") for name in names):
            REGISTRY.unregister(collector)


# ---------------------------------------------------------------- real Redis
REQUIRE_REDIS = os.environ.get("INVGUARD_REQUIRE_REDIS") == "1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server on a free loopback port, owned by the test session."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: object = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess
        import time

        import redis

        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start within 10 s")

    def stop(self) -> None:
        import subprocess

        proc = self.process
        if isinstance(proc, subprocess.Popen) and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)

    def running(self) -> bool:
        import subprocess

        return isinstance(self.process, subprocess.Popen) and self.process.poll() is None

    def flush(self) -> None:
        import redis

        redis.Redis(port=self.port).flushall()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis; skipped when redis-server is missing unless INVGUARD_REQUIRE_REDIS=1."""
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        if REQUIRE_REDIS:
            pytest.fail("INVGUARD_REQUIRE_REDIS=1 but redis-server is not installed")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a flushed, running Redis."""
    if not redis_server.running():
        redis_server.start()
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """(x_train, x_test) of the digits example's split."""
    x_train, x_test, _, _ = digits_module("model").load_split()  # type: ignore[attr-defined]
    return x_train, x_test


@pytest.fixture(scope="session")
def profile(digits: tuple[np.ndarray, np.ndarray]) -> Profile:
    """The default profile of the training rows (Profile is frozen: safe to share)."""
    return Profile.fit(digits[0])
