"""The invguard entry point: help for every command, usage errors, the installed script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Run

COMMANDS = ("init", "keygen", "check", "profile", "audit", "blocks", "flagged", "attack")


def test_help_lists_every_command(run: Run) -> None:
    """`invguard --help` exits 0 and names each command."""
    result = run("--help")
    assert 0 == result.code
    for command in COMMANDS:
        assert command in result.out


@pytest.mark.parametrize("argv", [*([c] for c in COMMANDS), ["profile", "fit"]])
def test_every_command_has_help(run: Run, argv: list[str]) -> None:
    """Each command and subcommand answers --help with its own usage line."""
    result = run(*argv, "--help")
    assert 0 == result.code
    assert f"usage: invguard {' '.join(argv)}" in result.out


def test_version(run: Run) -> None:
    """--version prints the library version."""
    from bento_invguard import __version__

    result = run("--version")
    assert 0 == result.code
    assert f"invguard {__version__}" in result.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["frobnicate"], "invalid choice"),
        (["profile"], "required"),
        (["keygen", "--id", "x"], "--tier"),
    ],
)
def test_usage_errors_exit_2(run: Run, argv: list[str], message: str) -> None:
    """A missing or unknown command or argument is a usage error: exit 2, said on stderr."""
    result = run(*argv)
    assert 2 == result.code
    assert message in result.err
    assert "" == result.out


def _script() -> Path:
    script = Path(sys.executable).with_name("invguard")
    assert script.exists(), f"the console script is not installed at {script}"
    return script


def test_installed_script_help() -> None:
    """The `invguard` console script installed with the package runs and shows help."""
    result = subprocess.run(
        [str(_script()), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert 0 == result.returncode, result.stderr
    assert "usage: invguard" in result.stdout
    assert "keygen" in result.stdout


def test_installed_script_reports_bad_file_on_stderr(tmp_path: Path) -> None:
    """A missing file: exit status 2 and a one-line error on stderr, nothing on stdout."""
    env = {k: v for k, v in os.environ.items() if k != "INVGUARD_KEYS"}
    result = subprocess.run(
        [str(_script()), "check", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert 2 == result.returncode
    assert "" == result.stdout
    assert "invguard check: error:" in result.stderr
    assert "missing.yaml" in result.stderr
