"""`invguard verify-copy --url` against a real `bentoml serve` of a stolen copy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.support.serving import launch_serve, stop_process_tree, wait_ready

from bento_invguard.cli import main

from .copies import Theft

pytestmark = pytest.mark.integration

SERVICE = '''
import os
import sys

import bentoml
import numpy as np

sys.path.insert(0, os.environ["WM_SUSPECTS_DIR"])
suspects = __import__(os.environ["WM_SUSPECTS_MODULE"])


@bentoml.service
class Suspects:
    @bentoml.api
    def copy(self, x: np.ndarray) -> np.ndarray:
        """The thief's copy, answering one-hot scores."""
        return np.eye(10)[suspects.copy(x)]

    @bentoml.api
    def independent(self, x: np.ndarray) -> np.ndarray:
        """A model trained on true labels only."""
        return suspects.independent(x)
'''


@pytest.fixture(scope="module")
def served(theft: Theft, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Both suspects behind one `bentoml serve` on loopback; yields the base URL."""
    root = tmp_path_factory.mktemp("suspects_serve")
    (root / "service.py").write_text(SERVICE)
    home = root / "bentoml_home"
    home.mkdir()
    env = dict(os.environ)
    env.update(
        BENTOML_HOME=str(home),
        BENTOML_DO_NOT_TRACK="True",
        WM_SUSPECTS_DIR=str(theft.suspects),
        WM_SUSPECTS_MODULE=theft.module_name,
    )
    log = root / "serve.log"
    proc, base_url = launch_serve(root, env, log, target="service:Suspects")
    try:
        wait_ready(proc, base_url, log)
        yield base_url
    finally:
        stop_process_tree(proc)


def test_served_copy_is_shown_with_exit_code_0(
    theft: Theft, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every kept input comes back with its watermark label; p <= 1e-6; exit 0."""
    code = main(["verify-copy", str(theft.evidence), "--url", f"{served}/copy"])
    out = capsys.readouterr().out
    assert 0 == code, out
    assert f"watermark matches: {theft.marked} of {theft.marked}" in out
    assert "verdict: a copy" in out


def test_served_independent_model_is_not_shown_with_exit_code_1(
    theft: Theft, served: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model that never saw our answers: not shown to be a copy, exit 1."""
    code = main(["verify-copy", str(theft.evidence), "--url", f"{served}/independent"])
    out = capsys.readouterr().out
    assert 1 == code, out
    assert "verdict: not shown" in out


def test_unreachable_suspect_is_a_usage_error(theft: Theft, tmp_path: Path) -> None:
    """A URL that answers nothing (or an error) is exit 2, not a verdict."""
    assert 2 == main(["verify-copy", str(theft.evidence), "--url", "http://127.0.0.1:9/x"])
