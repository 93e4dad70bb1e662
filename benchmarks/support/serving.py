"""Real ``bentoml serve`` processes on loopback, for the benchmarks and the end-to-end tests.

Copying and training the digits example, starting a server on a free port,
waiting for ``/readyz``, reading its process tree's CPU time and stopping the
whole tree. A failure raises :class:`ServeError` with the tail of the
server's output.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import httpx
import psutil

from bento_invguard import hash_key

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "examples" / "digits"
HOST = "127.0.0.1"
TARGET = "service:DigitsClassifier"
READY_TIMEOUT_S = 60.0
TRAIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
LOG_TAIL_CHARS = 6000
NO_PERSISTENCE = ("--save", "", "--appendonly", "no", "--dir")


class ServeError(RuntimeError):
    """A server or the example's training did not come up; the message holds its output."""


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
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bentoml_command() -> list[str]:
    """``<venv>/bin/bentoml`` beside this interpreter, else ``python -m bentoml``."""
    script = Path(sys.executable).with_name("bentoml")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bentoml"]


def server_env(bentoml_home: Path, keys: dict[str, str]) -> dict[str, str]:
    """The server's environment; ``keys`` maps a principal id ``<name>-<tier>-<n>`` to its key."""
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


def _tail(log_path: Path) -> str:
    return log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]


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
        raise ServeError(f"train.py exited with {result.returncode}:\n{_tail(log_path)}")
    weights = sorted(Path(env["BENTOML_HOME"]).glob("models/invguard_digits/*/weights.npz"))
    if len(weights) != 1:
        raise ServeError(f"expected one trained model, found {weights}")
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
    app_dir: Path, env: dict[str, str], log_path: Path, target: str = TARGET
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
    """Poll ``/readyz`` until 200 and return the seconds it took; raise on exit or timeout."""
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
    output = _tail(log_path)
    stop_process_tree(proc)
    raise ServeError(f"bentoml serve {why}; its output:\n{output}")


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, persisting nothing."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", HOST, *NO_PERSISTENCE, str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise ServeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Server:
    """``bentoml serve TARGET`` from ``app_dir``; output to ``<app_dir>/../<name>.log``."""

    def __init__(self, name: str, app_dir: Path, env: dict[str, str], target: str = TARGET) -> None:
        self.name = name
        self.log_path = app_dir.parent / f"{name}.log"
        self.proc, self.url = launch_serve(app_dir, env, self.log_path, target)

    def wait_ready(self) -> None:
        """Until ``/readyz`` answers 200; raises :class:`ServeError` otherwise."""
        wait_ready(self.proc, self.url, self.log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """CPU time of the server's whole process tree (arbiter and workers)."""
        total = 0.0
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.proc.pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    total += times.user + times.system
        return total

    def workers_seen(self) -> set[str]:
        """Worker indexes that wrote a log line (BentoML prefixes them)."""
        return set(re.findall(r"\[entry_service:digits_classifier:(\d+)\]", self.log()))

    def stop(self) -> None:
        stop_process_tree(self.proc)
