"""verify_copy and `invguard verify-copy` on local suspects: a copy is shown, others not."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from bento_invguard.cli import main
from bento_invguard.watermark import (
    Evidence,
    SuspectError,
    binomial_tail,
    function_predictor,
    read_evidence,
    verify_copy,
)

from .copies import Theft


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [
        (0, 10, 0.1),
        (3, 10, 0.1),
        (12, 500, 1 / 9),
        (60, 500, 1 / 9),
        (500, 500, 0.5),
        (7, 7, 1 / 99),
    ],
)
def test_binomial_tail_matches_scipy(k: int, n: int, p: float) -> None:
    """P[X >= k] agrees with scipy's survival function to 1e-9 relative."""
    expected = float(binom.sf(k - 1, n, p))
    assert expected == pytest.approx(binomial_tail(k, n, p), rel=1e-9, abs=1e-300)


def kept(n: int, classes: int = 10) -> list[Evidence]:
    return [
        Evidence(
            np.array([float(i), 1.0]),
            label=(i % 9) + 1,
            top=0,
            classes=classes,
            principal=f"p{i % 2}",
            model_version="v",
            tier="t",
        )
        for i in range(n)
    ]


def test_verdict_counts_matches_and_uses_p0_one_over_classes_minus_one() -> None:
    """Matches, top-1 matches and the p-value follow from the answers, capped by max_queries."""
    records = kept(40)

    def half(rows: np.ndarray) -> np.ndarray:  # the mark on even rows, top-1 on odd ones
        return np.array([(int(r[0]) % 9) + 1 if int(r[0]) % 2 == 0 else 0 for r in rows])

    verdict = verify_copy(records, half, max_queries=30, alpha=1e-6)
    assert (30, 15, 15) == (verdict.tested, verdict.matches, verdict.top_matches)
    assert 1 / 9 == verdict.p0
    assert binomial_tail(15, 30, 1 / 9) == verdict.p_value
    assert verdict.is_copy
    assert {"p0": 15} == verdict.principals


def test_a_model_that_answers_top1_is_never_a_copy() -> None:
    """A suspect that keeps our top-1 everywhere matches no mark: p = 1, exit 1."""
    verdict = verify_copy(kept(100), lambda rows: np.zeros(len(rows), dtype=int))
    assert 0 == verdict.matches and 1.0 == verdict.p_value and not verdict.is_copy


def test_copy_is_shown_and_independent_model_is_not(theft: Theft) -> None:
    """The 1-NN copy of 3,000 watermarked answers: p <= 1e-6; the independent model: p >= 0.01."""
    records = list(read_evidence([theft.evidence]))
    assert len(records) >= 8
    module = importlib.import_module(theft.module_name)
    copy = verify_copy(records, module.copy)
    independent = verify_copy(records, module.independent)
    assert copy.is_copy and copy.p_value <= 1e-6
    assert not independent.is_copy and independent.p_value >= 0.01


def test_cli_exit_codes_on_local_functions(
    theft: Theft, capsys: pytest.CaptureFixture[str]
) -> None:
    """`invguard verify-copy --function`: 0 for the copy, 1 for the independent model."""
    base = [str(theft.evidence), "--path", str(theft.suspects), "--json"]
    name = theft.module_name
    assert 0 == main(["verify-copy", *base, "--function", f"{name}:copy"])
    shown = json.loads(capsys.readouterr().out)
    assert "copy" == shown["verdict"] and shown["matches"] == shown["tested"]
    assert {"thief": shown["tested"]} == shown["principals"]
    assert 1 == main(["verify-copy", *base, "--function", f"{name}:independent"])
    assert "not shown" == json.loads(capsys.readouterr().out)["verdict"]


def test_cli_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Missing evidence, a bad --function, no kept inputs: exit 2 with a message."""
    assert 2 == main(["verify-copy", str(tmp_path / "none.jsonl"), "--function", "m:f"])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert 2 == main(["verify-copy", str(empty), "--function", "nosuchmodule_xyz:f"])
    assert 2 == main(["verify-copy", str(empty), "--function", "numpy:argmax"])
    (tmp_path / "bad.jsonl").write_text('{"input": 1}\n')
    assert 2 == main(["verify-copy", str(tmp_path / "bad.jsonl"), "--function", "numpy:argmax"])
    err = capsys.readouterr().err
    assert "no such file" in err and "cannot import" in err and "no kept inputs" in err
    assert "bad.jsonl:1" in err
    with pytest.raises(SuspectError, match="module:function"):
        function_predictor("nocolon")
