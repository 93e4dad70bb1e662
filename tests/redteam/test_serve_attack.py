"""``invguard attack`` against the digits example served by a real ``bentoml serve``.

Small budgets: each run takes a few seconds, rate-limit waits included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bento_invguard.cli import main
from bento_invguard.redteam.images import read_png

from ..end_to_end.conftest import DigitsServer

pytestmark = pytest.mark.integration


def attack(
    capsys: pytest.CaptureFixture[str],
    server: DigitsServer,
    *argv: str | Path,
    path: str = "/predict",
) -> tuple[int, dict[str, Any] | None, str]:
    capsys.readouterr()
    code = main(["attack", server.base_url + path, "--quiet", "--json", *map(str, argv)])
    captured = capsys.readouterr()
    report = json.loads(captured.out) if captured.out.strip() else None
    return code, report, captured.err


def test_inversion_with_full_scores_is_blocked(
    capsys: pytest.CaptureFixture[str],
    digits_server: DigitsServer,
    reference_file: Path,
    tmp_path: Path,
) -> None:
    """Trusted key (full scores), monitor on: NES is blocked early, nothing recognisable leaks."""
    key = digits_server.key("trusted")
    code, report, err = attack(
        capsys, digits_server, "--key", key, "--attack", "inversion", "--budget", "400",
        "--reference", reference_file, "--image", "8x8", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert report is not None
    q = report["queries"]
    assert report["stopped"] == "blocked"
    assert q["blocked_at"] is not None and q["blocked_at"] <= 200
    assert q["rejected"]["blocked"] > 0
    assert q["answers"] == "scores"
    assert report["leakage"]["score"] < 0.5
    png = read_png(Path(report["image"]))
    assert png.shape == (8 * 8 + 2 * 2, 10 * 8 * 8 + 11 * 2)  # one row of 10 tiles
    saved = json.loads((tmp_path / "inversion.json").read_text())
    assert saved["queries"] == q


def test_label_only_on_public_key_is_refused_then_blocked(
    capsys: pytest.CaptureFixture[str], digits_server: DigitsServer, reference_file: Path
) -> None:
    """Public key (labels): the probes are refused as far from the data, then the key is
    blocked (off_data); nothing is learnt."""
    key = digits_server.key("public")
    code, report, err = attack(
        capsys, digits_server, "--key", key, "--attack", "label-only", "--budget", "200",
        "--reference", reference_file,
    )  # fmt: skip
    assert code == 0, err
    assert report is not None
    q = report["queries"]
    assert "blocked" == report["stopped"]
    assert q["rejected"]["invalid_input"] > 0
    assert q["blocked_at"] is not None and q["blocked_at"] <= 200
    assert "off_data" in report["stop_detail"]
    assert 0.1 == report["leakage"]["chance"]
    assert report["leakage"]["score"] <= 0.2


def test_extraction_on_public_key_is_rate_limited(
    capsys: pytest.CaptureFixture[str], digits_server: DigitsServer, reference_file: Path
) -> None:
    """Public key (labels, 20 rows/s), natural rows: the 429s are waited out and recorded."""
    key = digits_server.key("public")
    code, report, err = attack(
        capsys, digits_server, "--key", key, "--attack", "extraction", "--budget", "60",
        "--reference", reference_file,
    )  # fmt: skip
    assert code == 0, err
    assert report is not None
    q = report["queries"]
    assert "labels" == q["answers"]
    assert q["first_rate_limited_at"] is not None
    assert q["rejected"].get("rate_limited", 0) > 0
    assert q["answered"] <= 60
    assert report["leakage"]["public_baseline"] > report["leakage"]["baseline"]


def test_extraction_reports_agreement(
    capsys: pytest.CaptureFixture[str], digits_server: DigitsServer, reference_file: Path
) -> None:
    code, report, err = attack(
        capsys, digits_server, "--key", digits_server.key("partner"), "--attack", "extraction",
        "--budget", "60", "--reference", reference_file, "--eval-key",
        digits_server.key("trusted"),
    )  # fmt: skip
    assert code == 0, err
    assert report is not None
    assert report["evaluation"]["labelled_by"] == "eval_key"
    leakage = report["leakage"]
    # 60 queried rows copy the model well beyond always answering its most common label
    # (seen: agreement 0.8 against a majority rate of 0.135).
    assert leakage["agreement"] > leakage["baseline"] + 0.3
    assert round(leakage["agreement"] - leakage["public_baseline"], 4) == leakage["score"]
    assert leakage["rows"] > 0
    assert report["details"]["trained_on"] > 0


@pytest.mark.parametrize("strategy", ["blend", "knockoff"])
def test_extraction_strategies_report_the_gain(
    capsys: pytest.CaptureFixture[str],
    digits_server: DigitsServer,
    reference_file: Path,
    strategy: str,
) -> None:
    """Synthetic and out-of-domain queries through the real service: the score is the gain."""
    code, report, err = attack(
        capsys, digits_server, "--key", digits_server.key("partner"), "--attack", "extraction",
        "--strategy", strategy, "--budget", "100", "--reference", reference_file,
        "--eval-key", digits_server.key("trusted"), "--fail-above", "0.5",
    )  # fmt: skip
    assert code == 0, err
    assert report is not None
    assert strategy == report["details"]["strategy"]
    leakage = report["leakage"]
    assert round(leakage["agreement"] - leakage["public_baseline"], 4) == leakage["score"]
    assert leakage["score"] <= 0.5


@pytest.mark.parametrize(
    ("tier", "path", "reason"),
    [(None, "/predict", "unauthenticated"), ("public", "/logits", "forbidden")],
)
def test_refused_from_the_start_exits_1(
    capsys: pytest.CaptureFixture[str],
    digits_server: DigitsServer,
    reference_file: Path,
    tier: str | None,
    path: str,
    reason: str,
) -> None:
    key = digits_server.key(tier) if tier else "not-a-key"
    code, report, err = attack(
        capsys, digits_server, "--key", key, "--attack", "inversion", "--budget", "40",
        "--reference", reference_file, path=path,
    )  # fmt: skip
    assert code == 1
    assert f"never answered: {reason}" in err
    assert report is not None and report["queries"]["answered"] == 0
