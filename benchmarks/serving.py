"""One ``bentoml serve`` on loopback for a benchmark, with its process tree's CPU time.

Launching, waiting and stopping are the integration tests' own helpers
(``tests/integration/conftest.py``), so benchmarks and tests start servers
the same way.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.conftest import forget_bentoml_metrics  # noqa: E402
from tests.integration.conftest import (  # noqa: E402
    launch_serve,
    stop_process_tree,
    wait_ready,
)

__all__ = ["TARGET", "Server", "forget_bentoml_metrics"]

TARGET = "service:DigitsClassifier"


class Server:
    """``bentoml serve TARGET`` from ``app_dir``; output to ``<app_dir>/../<name>.log``."""

    def __init__(self, name: str, app_dir: Path, env: dict[str, str], target: str = TARGET) -> None:
        self.name = name
        self.log_path = app_dir.parent / f"{name}.log"
        self.proc, self.url = launch_serve(app_dir, env, self.log_path, target)

    def wait_ready(self) -> None:
        """Until ``/readyz`` answers 200; fails with the server's output otherwise."""
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
