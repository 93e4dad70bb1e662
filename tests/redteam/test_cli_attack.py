"""``invguard attack``: argument errors (exit 2, message on stderr), help, unreachable endpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bento_invguard.cli import main

from ..integration.conftest import free_port

URL = "http://127.0.0.1:9/predict"


def invoke(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = invoke(capsys, "attack", "--help")
    assert code == 0
    assert "usage: invguard attack" in out
    for option in ("--attack", "--budget", "--reference", "--image", "--json", "--quiet"):
        assert option in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attack", "inversion", "--shape", "64", "--min", "0", "--max", "16"], "URL"),
        ([URL, "--shape", "64", "--min", "0", "--max", "16"], "--attack"),
        ([URL, "--attack", "steal", "--shape", "64"], "invalid choice"),
        ([URL, "--attack", "inversion", "--budget", "many"], "invalid int value"),
        (["ftp://x/predict", "--attack", "inversion"], "not an http"),
        ([URL, "--attack", "inversion", "--budget", "0", "--shape", "64"], "--budget"),
        ([URL, "--attack", "inversion", "--min", "0", "--max", "16"], "--shape is needed"),
        ([URL, "--attack", "inversion", "--shape", "64"], "--min and --max"),
        ([URL, "--attack", "inversion", "--shape", "6a", "--min", "0", "--max", "1"], "--shape"),
        ([URL, "--attack", "inversion", "--shape", "64", "--min", "3", "--max", "1"], "below"),
        ([URL, "--attack", "label-only", "--shape", "64", "--min", "0", "--max", "1",
          "--image", "7x7"], "49 pixels"),
        ([URL, "--attack", "label-only", "--shape", "64", "--min", "0", "--max", "1",
          "--image", "big"], "--image"),
        ([URL, "--attack", "extraction", "--shape", "64", "--min", "0", "--max", "1",
          "--target-class", "2"], "--target-class"),
        ([URL, "--attack", "inversion", "--shape", "64", "--min", "0", "--max", "1",
          "--target-class", "-1"], "--target-class"),
        ([URL, "--attack", "inversion", "--shape", "64", "--min", "0", "--max", "1",
          "--batch", "0"], "--batch"),
        ([URL, "--attack", "inversion", "--shape", "64", "--min", "0", "--max", "1",
          "--fail-above", "2"], "--fail-above"),
        ([URL, "--attack", "inversion", "--reference", "missing.npz"], "no such file"),
    ],
)  # fmt: skip
def test_argument_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = invoke(capsys, "attack", *argv)
    assert code == 2, (out, err)
    assert message in err
    assert out == ""


def test_bad_reference_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, x=np.zeros((10, 64)))
    code, _, err = invoke(capsys, "attack", URL, "--attack", "inversion", "--reference", no_y)
    assert code == 2 and "no array named y" in err
    text = tmp_path / "ref.npz"
    text.write_text("not a zip")
    code, _, err = invoke(capsys, "attack", URL, "--attack", "inversion", "--reference", text)
    assert code == 2 and str(text) in err
    ok = tmp_path / "ok.npz"
    np.savez(ok, x=np.zeros((10, 64)), y=np.arange(10))
    code, _, err = invoke(
        capsys, "attack", URL, "--attack", "inversion", "--reference", ok, "--shape", "8,7"
    )
    assert code == 2 and "56 values per row" in err
    code, _, err = invoke(
        capsys, "attack", URL, "--attack", "inversion", "--reference", ok, "--target-class", "10"
    )
    assert code == 2 and "no such class" in err


def test_out_must_be_a_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    argv = [URL, "--attack", "inversion", "--shape", "64", "--min", "0", "--max", "1"]
    code, _, err = invoke(capsys, "attack", *argv, "--out", file)
    assert code == 2 and "not a folder" in err


def test_unreachable_endpoint_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listens: the report still prints, and the exit code says the run failed."""
    url = f"http://127.0.0.1:{free_port()}/predict"
    argv = ["--attack", "label-only", "--shape", "64", "--min", "0", "--max", "16"]
    code, out, err = invoke(capsys, "attack", url, *argv, "--budget", "10", "--quiet", "--json")
    assert code == 1
    assert "never answered: unreachable" in err
    assert '"stopped": "unreachable"' in out
