"""Watermark.apply on the answer path: only chosen rows change, and they leave evidence."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np

from bento_invguard.context import QueryContext
from bento_invguard.watermark import EvidenceWriter, Watermark, read_evidence

RATE = 0.05


def make(tmp_path: Path) -> Watermark:
    writer = EvidenceWriter(tmp_path / "evidence.jsonl")
    return Watermark(b"s3cret", rate=RATE, tier="public", writer=writer, model_version=lambda: "v7")


def query(rows: np.ndarray, principal: str = "eve") -> QueryContext:
    ctx = QueryContext(endpoint="predict", principal=principal, tier_name="public")
    ctx.input = rows
    return ctx


def batch(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 16, size=(n, 6)), rng.dirichlet(np.ones(5), size=n)


def test_only_chosen_rows_change_and_top1_stands_elsewhere(tmp_path: Path) -> None:
    """Rows the hash chooses answer their mark label; every other row is untouched."""
    mark = make(tmp_path)
    rows, scores = batch()
    out = mark.apply(query(rows), scores)
    changed = np.flatnonzero((out != scores).any(axis=1))
    assert 5 < len(changed) < 50  # 400 rows at 5 %: 20 expected
    for i in range(len(rows)):
        label = mark.label_for(rows[i], int(scores[i].argmax()), 5)
        if i in changed:
            assert label == int(out[i].argmax())
            assert label != int(scores[i].argmax())
        else:
            assert label is None
            assert scores[i].tolist() == out[i].tolist()


def test_the_same_input_is_marked_the_same_way_every_time(tmp_path: Path) -> None:
    """Asking again (alone, in another batch, as ints) gives the same answer."""
    mark = make(tmp_path)
    rows, scores = batch()
    first = mark.apply(query(rows), scores)
    changed = np.flatnonzero((first != scores).any(axis=1))
    for i in changed[:5]:
        alone = mark.apply(query(rows[i : i + 1], "mallory"), scores[i : i + 1])
        assert first[i].tolist() == alone[0].tolist()
    ints = np.rint(rows)
    assert (mark.apply(query(ints), scores) == mark.apply(query(ints.astype(int)), scores)).all()


def test_evidence_holds_exactly_the_marked_inputs(tmp_path: Path) -> None:
    """One JSON line per marked row: raw input, principal, model version, labels; mode 0600."""
    mark = make(tmp_path)
    rows, scores = batch()
    out = mark.apply(query(rows, "eve"), scores)
    changed = np.flatnonzero((out != scores).any(axis=1))
    path = tmp_path / "evidence.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(changed) == len(lines)
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    for i, line in zip(changed, lines, strict=True):
        assert rows[i].tolist() == line["input"]
        assert [6] == line["shape"]
        assert "eve" == line["principal"]
        assert "v7" == line["model_version"]
        assert "public" == line["tier"]
        assert int(out[i].argmax()) == line["label"]
        assert int(scores[i].argmax()) == line["top"]
        assert 5 == line["classes"]
    kept = list(read_evidence([path]))
    assert [rows[i].tolist() for i in changed] == [k.input.tolist() for k in kept]


def test_evidence_is_written_once_per_query_and_read_once_per_input(tmp_path: Path) -> None:
    """Hardening twice (degraded answers) writes once; a repeated input reads back once."""
    mark = make(tmp_path)
    rows, scores = batch()
    ctx = query(rows)
    mark.apply(ctx, scores)
    mark.apply(ctx, scores)
    path = tmp_path / "evidence.jsonl"
    written = len(path.read_text().splitlines())
    assert written > 0
    mark.apply(query(rows), scores)  # the same inputs again, another query
    assert 2 * written == len(path.read_text().splitlines())
    assert written == len(list(read_evidence([path])))


def test_skipped_rows_and_mismatched_shapes_are_left_alone(tmp_path: Path) -> None:
    """Rows answered otherwise (silent answers) and outputs of another length are untouched."""
    mark = make(tmp_path)
    rows, scores = batch()
    skip = {i: 0 for i in range(len(rows))}
    assert mark.apply(query(rows), scores, skip) is scores
    assert mark.apply(query(rows[:10]), scores) is scores
    assert not (tmp_path / "evidence.jsonl").exists()
