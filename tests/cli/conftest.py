"""Running ``invguard`` in process, and a project folder made by ``invguard init``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bento_invguard.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run("check", "x.yaml")``: the exit code and what went to stdout and stderr."""
    monkeypatch.delenv("INVGUARD_KEYS", raising=False)

    def invoke(*argv: str | Path) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def project(run: Run, tmp_path: Path) -> Path:
    """A folder with the starter invguard.yaml and keys.yaml of ``invguard init``."""
    folder = tmp_path / "project"
    assert 0 == run("init", folder).code
    return folder
