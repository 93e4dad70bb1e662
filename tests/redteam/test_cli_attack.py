"""``invguard attack``: argument errors (exit 2, message on stderr), help, unreachable endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from benchmarks.support.serving import free_port

from bento_invguard.cli import main

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
    for option in ("--attack", "--budget", "--reference", "--strategy", "--json", "--quiet"):
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
        ([URL, "--attack", "inversion", "--shape", "64", "--min", "0", "--max", "1",
          "--strategy", "uniform"], "extraction only"),
        ([URL, "--attack", "extraction", "--shape", "64", "--min", "0", "--max", "1",
          "--strategy", "blend"], "needs --reference"),
        ([URL, "--attack", "extraction", "--shape", "64", "--min", "0", "--max", "1",
          "--strategy", "copycat"], "invalid choice"),
        (["http://[::1/predict", "--attack", "inversion", "--shape", "64", "--min", "0",
          "--max", "1"], "not a valid URL"),
        (["http:///predict", "--attack", "inversion", "--shape", "64", "--min", "0",
          "--max", "1"], "has no host"),
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
    npy = tmp_path / "ref.npy"
    np.save(npy, np.zeros((10, 64)))
    code, _, err = invoke(capsys, "attack", URL, "--attack", "inversion", "--reference", npy)
    assert code == 2 and str(npy) in err and "not an .npz archive" in err
    zipped = tmp_path / "zipped.npz"
    np.savez(zipped, x=np.zeros((10, 64)), y=np.arange(10))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(zipped.read_bytes()[:200])
    code, _, err = invoke(capsys, "attack", URL, "--attack", "inversion", "--reference", truncated)
    assert code == 2 and str(truncated) in err
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


@pytest.fixture
def refusing_server() -> Iterator[Callable[[int, dict[str, str]], str]]:
    """``url = refusing_server(status, body)``: a local endpoint answering every POST so."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, body: dict[str, str]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/predict"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_every_request_refused_exits_1(
    capsys: pytest.CaptureFixture[str],
    refusing_server: Callable[[int, dict[str, str]], str],
    reference_file: Path,
) -> None:
    """All 400s (e.g. a wrong --field): the budget is spent on refusals, nothing answered.
    Exit 1 and no leakage score, even with --fail-above: not a "no leak"."""
    url = refusing_server(400, {"error": "bad_request", "detail": "no field y"})
    code, out, err = invoke(
        capsys, "attack", url, "--attack", "label-only", "--reference", reference_file,
        "--field", "y", "--budget", "40", "--quiet", "--json", "--fail-above", "0.99",
    )  # fmt: skip
    assert code == 1, err
    assert "never answered: budget" in err and "bad_request" in err
    report = json.loads(out)
    assert report["queries"]["answered"] == 0
    assert report["leakage"] is None


def test_server_error_from_the_start_exits_1(
    capsys: pytest.CaptureFixture[str],
    refusing_server: Callable[[int, dict[str, str]], str],
    reference_file: Path,
) -> None:
    url = refusing_server(500, {"detail": "boom"})
    code, out, err = invoke(
        capsys, "attack", url, "--attack", "inversion", "--reference", reference_file,
        "--budget", "40", "--quiet", "--json",
    )  # fmt: skip
    assert code == 1, err
    assert "never answered: server_error" in err
    assert json.loads(out)["leakage"] is None


def test_out_keeps_one_report_per_attack(
    capsys: pytest.CaptureFixture[str],
    refusing_server: Callable[[int, dict[str, str]], str],
    reference_file: Path,
    tmp_path: Path,
) -> None:
    """Two attacks into one --out folder: ATTACK.json each, the second overwrites nothing."""
    url = refusing_server(400, {"error": "bad_request", "detail": "no"})
    for attack_name in ("label-only", "inversion"):
        invoke(
            capsys, "attack", url, "--attack", attack_name, "--reference", reference_file,
            "--budget", "10", "--quiet", "--json", "--out", tmp_path,
        )  # fmt: skip
    assert {"label-only.json", "inversion.json"} == {p.name for p in tmp_path.glob("*.json")}
    for attack_name in ("label-only", "inversion"):
        saved = json.loads((tmp_path / f"{attack_name}.json").read_text())
        assert str(tmp_path / f"{attack_name}.json") == saved["report_file"]
