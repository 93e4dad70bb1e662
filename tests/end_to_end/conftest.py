"""One real ``bentoml serve`` of the digits example, shared by the end-to-end tests.

The session fixture :func:`digits_server`:

1. copies ``examples/digits`` to a temp dir (the committed profile is never
   rewritten in place, and a local ``keys.yaml`` / ``.demo-keys`` is left out);
2. trains the model there into a temp ``BENTOML_HOME`` (``python train.py``);
3. makes fresh keys per tier and hands their digests to the server in
   ``INVGUARD_KEYS``: a pool per tier that requests take in turn, so that the
   example's per-principal rate limits never refuse a functional test, and
   one "burst" key per tier for the tests that hit a limit on purpose;
4. starts ``bentoml serve service:DigitsClassifier`` on a free loopback port,
   output captured to ``serve.log``, and waits for ``GET /readyz == 200``;
5. stops the whole process tree at the end of the session.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import psutil
import pytest
import yaml

from bento_invguard import generate_key, hash_key

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "examples" / "digits"
TIERS = ("public", "partner", "trusted")
HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
TRAIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_CHARS = 6000
#: Keys per tier that requests use in turn. The example limits each principal
#: (e.g. public: 20 rows a second); the whole session sends under ~100
#: requests per tier, so each pooled key carries only a few of them.
KEYS_PER_TIER = 48


@dataclass
class DigitsServer:
    """A running guarded digits service and what the tests need to talk to it."""

    base_url: str
    pools: dict[str, list[str]] = field(repr=False)
    burst_keys: dict[str, str] = field(repr=False)
    model: Any  # the example's SoftmaxModel, loaded from the trained weights
    x_test: np.ndarray
    y_test: np.ndarray
    app_dir: Path
    log_path: Path
    client: httpx.Client = field(repr=False)
    _turns: dict[str, Iterator[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._turns = {tier: itertools.cycle(keys) for tier, keys in self.pools.items()}

    def key(self, tier: str) -> str:
        """The next key of the tier's pool (a different principal than the last call's)."""
        return next(self._turns[tier])

    def auth(self, tier: str) -> dict[str, str]:
        """``Authorization: Bearer`` header with the tier's next pooled key."""
        return {"Authorization": f"Bearer {self.key(tier)}"}

    def policy(self) -> dict[str, Any]:
        """The policy the server runs (the example's invguard.yaml, as copied)."""
        return dict(yaml.safe_load((self.app_dir / "invguard.yaml").read_text()))

    def post(
        self,
        path: str,
        *,
        tier: str | None = None,
        json_body: Any = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """POST to the server; ``tier`` adds that tier's Bearer key.

        ``json_body`` is serialised with the standard library (so ``NaN`` or
        ``Infinity`` never sneak in); ``content`` is sent as is.
        """
        sent = dict(headers or {})
        if tier is not None:
            sent.update(self.auth(tier))
        if json_body is not None:
            content = json.dumps(json_body, allow_nan=False)
            sent.setdefault("content-type", "application/json")
        return self.client.post(path, content=content, headers=sent, **kwargs)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        return text[-chars:]


def free_port() -> int:
    """A port the kernel just handed out on loopback (free unless someone races us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def copy_example(dest: Path) -> Path:
    """Copy the digits example without local secrets or caches."""
    shutil.copytree(
        EXAMPLE_DIR,
        dest,
        ignore=shutil.ignore_patterns("keys.yaml", ".demo-keys", "__pycache__", "*.pyc"),
    )
    return dest


def load_module(path: Path, name: str) -> ModuleType:
    """Import a file under a unique module name (the example's ``model`` is a common name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bentoml_command() -> list[str]:
    """``<venv>/bin/bentoml`` beside this interpreter, else ``python -m bentoml``."""
    script = Path(sys.executable).with_name("bentoml")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bentoml"]


def server_env(bentoml_home: Path, keys: dict[str, str]) -> dict[str, str]:
    """The server's environment; ``keys`` maps a principal id ``it-<tier>-<n>`` to its raw key."""
    env = dict(os.environ)
    env.pop("INVGUARD_POLICY", None)
    env.update(
        BENTOML_HOME=str(bentoml_home),
        BENTOML_DO_NOT_TRACK="True",
        PYTHONUNBUFFERED="1",
        INVGUARD_KEYS=json.dumps(
            [
                {"id": key_id, "sha256": hash_key(key), "tier": key_id.split("-")[1]}
                for key_id, key in keys.items()
            ],
            separators=(",", ":"),
        ),
    )
    return env


def train(app_dir: Path, env: dict[str, str], log_path: Path) -> Path:
    """Run the example's train.py in ``app_dir``; return the stored weights file."""
    with log_path.open("wb") as log:
        result = subprocess.run(
            [sys.executable, "train.py"],
            cwd=app_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=TRAIN_TIMEOUT_S,
            check=False,
        )
    if result.returncode != 0:
        pytest.fail(
            f"train.py exited with {result.returncode}:\n"
            + log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:],
            pytrace=False,
        )
    weights = sorted(Path(env["BENTOML_HOME"]).glob("models/invguard_digits/*/weights.npz"))
    assert len(weights) == 1, f"expected one trained model, found {weights}"
    return weights[0]


def stop_process_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then make sure every descendant is gone.

    BentoML's arbiter starts each worker in a session of its own, so the
    workers are not in the arbiter's process group: they are collected by pid
    first and, should the arbiter not stop them, ended by pid.
    """
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)
    _, alive = psutil.wait_procs(descendants, timeout=STOP_TIMEOUT_S)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)


def launch_serve(
    app_dir: Path, env: dict[str, str], log_path: Path, target: str = "service:DigitsClassifier"
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``bentoml serve`` on a free loopback port, output to ``log_path``; not yet ready."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*bentoml_command(), "serve", target, "--host", HOST, "--port", str(port)],
            cwd=app_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, f"http://{HOST}:{port}"


def wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> float:
    """Poll ``/readyz`` until 200; fail with the server's output on exit or timeout."""
    started = time.monotonic()
    deadline = started + READY_TIMEOUT_S
    last = "no answer yet"
    with httpx.Client(base_url=base_url, timeout=2.0) as probe:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                response = probe.get("/readyz")
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return time.monotonic() - started
                last = f"HTTP {response.status_code}"
            time.sleep(0.2)
    why = (
        f"exited with code {proc.returncode}"
        if proc.poll() is not None
        else f"not ready after {READY_TIMEOUT_S:.0f} s ({last})"
    )
    output = log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
    stop_process_tree(proc)
    pytest.fail(f"bentoml serve {why}; its output:\n{output}", pytrace=False)


@pytest.fixture(scope="session")
def digits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DigitsServer]:
    """The digits example served guarded by a real ``bentoml serve`` on loopback."""
    root = tmp_path_factory.mktemp("digits_serve")
    app_dir = copy_example(root / "digits")
    bentoml_home = root / "bentoml_home"
    bentoml_home.mkdir()
    pools = {tier: [generate_key() for _ in range(KEYS_PER_TIER)] for tier in TIERS}
    burst_keys = {tier: generate_key() for tier in TIERS}
    by_id = {f"it-{tier}-{n}": key for tier, keys in pools.items() for n, key in enumerate(keys)}
    by_id.update({f"it-{tier}-burst": key for tier, key in burst_keys.items()})
    env = server_env(bentoml_home, by_id)
    weights = train(app_dir, env, root / "train.log")

    model_module = load_module(app_dir / "model.py", "invguard_it_digits_model")
    model = model_module.SoftmaxModel.load(str(weights))
    _, x_test, _, y_test = model_module.load_split()

    log_path = root / "serve.log"
    proc, base_url = launch_serve(app_dir, env, log_path)
    try:
        wait_ready(proc, base_url, log_path)
        with httpx.Client(base_url=base_url, timeout=15.0) as client:
            yield DigitsServer(
                base_url=base_url,
                pools=pools,
                burst_keys=burst_keys,
                model=model,
                x_test=x_test,
                y_test=y_test,
                app_dir=app_dir,
                log_path=log_path,
                client=client,
            )
    finally:
        stop_process_tree(proc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tail of the server's output to a failed test that used the server."""
    report = yield
    server = getattr(item, "funcargs", {}).get("digits_server")
    if report.failed and isinstance(server, DigitsServer):
        report.sections.append(("bentoml serve output (tail)", server.log_tail()))
    return report
