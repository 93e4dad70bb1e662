"""`invguard profile fit`: a reference profile from .npy or .csv, never unpickling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bento_invguard import Profile

from .conftest import Run

ROWS = np.random.default_rng(7).normal(loc=5.0, size=(120, 4))


def test_fit_from_npy(run: Run, tmp_path: Path) -> None:
    """The saved profile covers the data and rejects a far-off row."""
    np.save(tmp_path / "train.npy", ROWS)
    result = run("profile", "fit", tmp_path / "train.npy", "-o", tmp_path / "p.json")
    assert 0 == result.code, result.err
    assert "fitted on 120 rows of shape (4,)" in result.out
    profile = Profile.load(tmp_path / "p.json")
    assert 120 == profile.n_samples
    assert profile.first_violation(ROWS) is None
    assert profile.first_violation(np.full((1, 4), 100.0)) is not None


def test_fit_options_reach_the_profile(run: Run, tmp_path: Path) -> None:
    """--margin widens the bounds; --max-outside is stored as given."""
    np.save(tmp_path / "train.npy", ROWS)
    run("profile", "fit", tmp_path / "train.npy", "-o", tmp_path / "a.json", "--margin", "0")
    result = run(
        "profile", "fit", tmp_path / "train.npy", "-o", tmp_path / "b.json",
        "--margin", "0.5", "--max-outside", "2",
    )  # fmt: skip
    assert 0 == result.code
    tight, wide = Profile.load(tmp_path / "a.json"), Profile.load(tmp_path / "b.json")
    assert np.allclose(ROWS.min(axis=0), tight.lower)
    assert all(w < t for w, t in zip(wide.lower, tight.lower, strict=True))
    assert 2 == wide.max_outside


@pytest.mark.parametrize("header", [True, False])
def test_fit_from_csv(run: Run, tmp_path: Path, header: bool) -> None:
    """A CSV file, with or without a header row, gives the same profile as the array."""
    np.savetxt(
        tmp_path / "train.csv", ROWS, delimiter=",", header="a,b,c,d" if header else "", comments=""
    )
    result = run("profile", "fit", tmp_path / "train.csv", "-o", tmp_path / "p.json")
    assert 0 == result.code, result.err
    profile = Profile.load(tmp_path / "p.json")
    assert (4,) == profile.feature_shape
    assert 120 == profile.n_samples


def test_fit_refuses_pickled_data(run: Run, tmp_path: Path) -> None:
    """An object array (pickle inside) is refused, not unpickled."""
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    result = run("profile", "fit", tmp_path / "evil.npy", "-o", tmp_path / "p.json")
    assert 2 == result.code
    assert "allow_pickle=False" in result.err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("flat.npy", np.arange(5.0), "shape (n_samples"),
        ("nan.npy", np.array([[1.0, np.nan]]), "NaN"),
        ("text.npy", np.array([["a", "b"]]), "numeric"),
        ("train.txt", None, "expected a .npy or .csv"),
        ("absent.npy", None, "no such file"),
    ],
)
def test_fit_refuses_bad_data(
    run: Run, tmp_path: Path, name: str, data: np.ndarray | None, message: str
) -> None:
    """Bad data files exit 2 with a message naming the problem; nothing is written."""
    path = tmp_path / name
    if data is not None:
        np.save(path, data)
    elif name.endswith(".txt"):
        path.write_text("1,2\n")
    result = run("profile", "fit", path, "-o", tmp_path / "p.json")
    assert 2 == result.code
    assert message in result.err
    assert not (tmp_path / "p.json").exists()


def test_fit_refuses_a_csv_with_ragged_rows(run: Run, tmp_path: Path) -> None:
    """A CSV that is not a table is reported, not half-read."""
    (tmp_path / "bad.csv").write_text("1,2,3\n4,5\n")
    result = run("profile", "fit", tmp_path / "bad.csv", "-o", tmp_path / "p.json")
    assert 2 == result.code
    assert "bad.csv: cannot load" in result.err


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--margin", "-1"], "--margin"), (["--max-outside", "-2"], "--max-outside")],
)
def test_fit_refuses_bad_options(run: Run, tmp_path: Path, option: list[str], message: str) -> None:
    """Negative margins and counts are usage errors."""
    np.save(tmp_path / "train.npy", ROWS)
    result = run("profile", "fit", tmp_path / "train.npy", "-o", tmp_path / "p.json", *option)
    assert 2 == result.code
    assert message in result.err


def test_fit_requires_an_output(run: Run, tmp_path: Path) -> None:
    """-o is required."""
    result = run("profile", "fit", tmp_path / "train.npy")
    assert 2 == result.code
    assert "-o/--output" in result.err
