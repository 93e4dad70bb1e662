"""Real ``bentoml serve`` processes of the digits example for the robustness tests.

Training takes ~10 s; these tests need a stored model of the right shape, not
a good one, so :func:`model_home` stores deterministic random weights once
per session (~2 s) and every server gets a copy of that BentoML home (its own
audit files, its own log). Servers run on loopback with bounded start-up and
are stopped with their whole process tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from benchmarks.support.serving import (
    EXAMPLE_DIR,
    copy_example,
    free_port,
    launch_serve,
    load_module,
    server_env,
    stop_process_tree,
    wait_ready,
)

from bento_invguard import generate_key

TIERS = ("public", "partner", "trusted")
KEYS_PER_TIER = 16
FAILED_START_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 6000

STORE_RANDOM_MODEL = """
from pathlib import Path
import bentoml, numpy as np
rng = np.random.default_rng(0)
with bentoml.models.create("invguard_digits", labels={"example": "digits"}) as model:
    np.savez(Path(model.path) / "weights.npz",
             coef=rng.normal(0.0, 1.0, (10, 64)), intercept=np.zeros(10))
"""

#: BentoML's tracing sends every span to an OTLP collector that is not there.
DEAD_COLLECTOR_CONFIG = """\
services:
  tracing:
    exporter_type: otlp
    sample_rate: 1.0
    timeout: 1
    otlp:
      protocol: http
      endpoint: http://127.0.0.1:{port}/v1/traces
"""


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML home holding an ``invguard_digits`` model (random weights, right shapes)."""
    home = tmp_path_factory.mktemp("hardening_model_home")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run([sys.executable, "-c", STORE_RANDOM_MODEL], env=env, check=True, timeout=120)
    return home


@pytest.fixture(scope="session")
def digit_rows() -> np.ndarray:
    """Real digits (the example's held-out split): they pass the committed profile."""
    module = load_module(EXAMPLE_DIR / "model.py", "invguard_hardening_digits_model")
    _, x_test, _, _ = module.load_split()
    return np.asarray(x_test)


@dataclass
class Served:
    """One running ``bentoml serve`` of a copy of the example."""

    base_url: str
    keys: dict[str, str] = field(repr=False)  # key id -> raw key
    app_dir: Path
    home: Path
    log_path: Path
    client: httpx.Client = field(repr=False)
    #: Every raw key string any test presented to this server, valid or not.
    presented: set[str] = field(default_factory=set, repr=False)

    def key(self, tier: str, n: int = 0) -> str:
        return self.keys[f"it-{tier}-{n}"]

    def post(self, path: str, body: Any = None, *, key: str | None = None, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
            self.presented.add(key)
        if body is not None:
            kw["content"] = json.dumps(body)
            headers.setdefault("content-type", "application/json")
        return self.client.post(path, headers=headers, **kw)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def audit_text(self) -> str:
        files = sorted((self.home / "invguard" / "audit").glob("*.jsonl*"))
        return "".join(p.read_text(encoding="utf-8", errors="replace") for p in files)


def prepare_app(
    root: Path,
    *,
    policy: Callable[[dict[str, Any]], None] | None = None,
    service: Callable[[str], str] | None = None,
) -> Path:
    """A copy of the example, its invguard.yaml and service.py edited by the callbacks."""
    app_dir = copy_example(root / "digits")
    if policy is not None:
        data = yaml.safe_load((app_dir / "invguard.yaml").read_text())
        policy(data)
        (app_dir / "invguard.yaml").write_text(yaml.safe_dump(data))
    if service is not None:
        path = app_dir / "service.py"
        path.write_text(service(path.read_text()))
    return app_dir


def home_copy(model_home: Path, dest: Path) -> Path:
    shutil.copytree(model_home, dest)
    return dest


def start(app_dir: Path, env: dict[str, str], log_path: Path) -> tuple[Any, str]:
    """``bentoml serve service:DigitsClassifier`` on a free port, ready (or the test fails)."""
    proc, base_url = launch_serve(app_dir, env, log_path)
    wait_ready(proc, base_url, log_path)
    return proc, base_url


def serve_expecting_failure(app_dir: Path, env: dict[str, str], log_path: Path) -> tuple[int, str]:
    """Run ``bentoml serve`` that must refuse to start; its exit code and output."""
    proc, _ = launch_serve(app_dir, env, log_path)
    try:
        code = proc.wait(timeout=FAILED_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop_process_tree(proc)
        output = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        pytest.fail(f"bentoml serve did not refuse to start:\n{output}", pytrace=False)
    return code, log_path.read_text(encoding="utf-8", errors="replace")


def pooled_keys(per_tier: int = KEYS_PER_TIER) -> dict[str, str]:
    return {f"it-{t}-{n}": generate_key() for t in TIERS for n in range(per_tier)}


@pytest.fixture(scope="session")
def guarded_server(tmp_path_factory: pytest.TempPathFactory, model_home: Path) -> Iterator[Served]:
    """The example, guarded as shipped, with BentoML's tracing exporting every span to an
    OTLP collector that does not exist (so every test against it runs with one down)."""
    root = tmp_path_factory.mktemp("hardening_serve")
    app_dir = prepare_app(root)
    home = home_copy(model_home, root / "bentoml_home")
    keys = pooled_keys()
    config = root / "bentoml_configuration.yaml"
    config.write_text(DEAD_COLLECTOR_CONFIG.format(port=free_port()))
    env = server_env(home, keys)
    env.update(BENTOML_CONFIG=str(config), OTEL_BSP_SCHEDULE_DELAY="200")
    log_path = root / "serve.log"
    proc, base_url = start(app_dir, env, log_path)
    try:
        with httpx.Client(base_url=base_url, timeout=15.0) as client:
            yield Served(base_url, keys, app_dir, home, log_path, client)
    finally:
        stop_process_tree(proc)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tail of the server's output to a failed test that used a server."""
    report = yield
    server = getattr(item, "funcargs", {}).get("guarded_server")
    if report.failed and isinstance(server, Served):
        report.sections.append(("bentoml serve output (tail)", server.log()[-LOG_TAIL_CHARS:]))
    return report
