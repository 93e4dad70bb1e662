"""The attacks and the run, against an in-process endpoint (httpx mock transport)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bento_invguard.redteam import InputSpace, Plan, Reference, run
from bento_invguard.redteam.inversion import LABELS_ONLY
from bento_invguard.redteam.strategies import natural_rows

from .conftest import Digits, MockEndpoint

URL = "http://model.test/predict"


def plan(attack: str, budget: int, **kwargs: object) -> Plan:
    return Plan(attack=attack, url=URL, budget=budget, shape=(64,), low=0, high=16, **kwargs)  # type: ignore[arg-type]


def test_inversion_from_scores_leaks(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    """Full scores, 200 rows per class: the judge recognises most reconstructions."""
    reference = Reference(digits.x_test, digits.y_test)
    report, result = run(plan("inversion", 2000), reference, client=endpoint().client())
    assert report["leakage"]["score"] >= 0.7
    assert report["queries"]["answered"] <= 2000
    assert result.reconstructions is not None and result.reconstructions.shape == (10, 64)
    assert ((result.reconstructions >= 0) & (result.reconstructions <= 16)).all()


def test_inversion_gives_up_on_labels(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """One-hot answers have no gradient: the attack says so and stops early."""
    reference = Reference(digits.x_test, digits.y_test)
    report, _ = run(plan("inversion", 2000), reference, client=endpoint(mode="label").client())
    assert report["stopped"] == "labels_only"
    assert LABELS_ONLY in report["notes"]
    assert report["queries"]["answered"] < 100
    assert report["leakage"]["score"] <= 0.2


def test_label_only_leaks_from_labels(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    reference = Reference(digits.x_test, digits.y_test)
    report, _ = run(plan("label-only", 400), reference, client=endpoint(mode="label").client())
    assert report["queries"]["answers"] == "labels"
    assert report["leakage"]["score"] >= 0.7
    assert sum(report["details"]["answers_per_class"].values()) == 399  # + the first contact


def test_one_target_class(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    reference = Reference(digits.x_test, digits.y_test)
    report, result = run(
        plan("inversion", 400, targets=(3,)), reference, client=endpoint().client()
    )
    assert result.reconstructions is not None and result.reconstructions.shape == (1, 64)
    assert report["targets"] == [3]
    assert len(report["leakage"]["recognised"]) == 1


def test_extraction_copies_the_model(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    """The copy agrees with the endpoint on held-out rows; the score is the gain over own data."""
    reference = Reference(digits.x_test, digits.y_test)
    report, result = run(plan("extraction", 300), reference, client=endpoint(mode="label").client())
    assert result.copy is not None
    leakage = report["leakage"]
    assert leakage["agreement"] > 0.8
    assert round(leakage["agreement"] - leakage["public_baseline"], 4) == leakage["score"]
    assert report["leakage"]["rows"] == 200
    assert report["evaluation"]["labelled_by"] == "attack_key"
    assert report["details"]["trained_on"] == 299  # budget minus the first contact


def test_no_reference_no_score(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    report, _ = run(plan("label-only", 40), None, client=endpoint().client())
    assert report["leakage"] is None
    assert any("--reference" in note for note in report["notes"])


def test_blocked_key_stops_the_attack(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """A block after two requests: stopped, recorded, leakage at chance (start images)."""
    reference = Reference(digits.x_test, digits.y_test)
    mock = endpoint(script={n: (403, "blocked", {"Retry-After": "900"}) for n in range(3, 99)})
    report, _ = run(plan("inversion", 2000), reference, client=mock.client())
    assert report["stopped"] == "blocked"
    assert report["queries"]["blocked_at"] == 41
    assert report["queries"]["answered"] == 21
    assert report["leakage"]["score"] <= 0.2
    assert mock.requests == 3


def test_natural_rows_pool_then_mixes(digits: Digits) -> None:
    space = InputSpace.from_rows(digits.x_test, 0.0, 16.0)
    rng = np.random.default_rng(0)
    pool = digits.x_test[:10]
    planned = natural_rows(space, pool, 25, rng)
    assert planned.shape == (25, 64)
    assert {tuple(r) for r in planned[:10]} == {tuple(r) for r in pool}
    assert ((planned >= space.lower) & (planned <= space.upper)).all()
    uniform = natural_rows(space, None, 5, rng)
    assert ((uniform >= space.lower) & (uniform <= space.upper)).all()


def test_reference_file(tmp_path: Path, digits: Digits) -> None:
    folder = tmp_path
    good = folder / "good.npz"
    np.savez(good, x=digits.x_test, y=digits.y_test)
    assert Reference.load(good).x.shape == (450, 64)
    bad = folder / "bad.npz"
    np.savez(bad, x=digits.x_test)
    with pytest.raises(ValueError, match="no array named y"):
        Reference.load(bad)
    np.savez(bad, x=digits.x_test, y=digits.y_test[:3])
    with pytest.raises(ValueError, match="need x"):
        Reference.load(bad)


def test_attacks_stay_within_budget(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    """However the budget splits, no attack sends more rows than it allows."""
    for attack, budget in (("inversion", 95), ("label-only", 33), ("extraction", 47)):
        mock = endpoint()
        report, _ = run(
            plan(attack, budget), Reference(digits.x_test, digits.y_test), client=mock.client()
        )
        assert report["queries"]["sent"] <= budget, attack
        evaluation = (report["evaluation"] or {}).get("queries", {"requests": 0})
        assert mock.requests == report["queries"]["requests"] + evaluation["requests"]


def test_refused_start_without_reference(endpoint: Callable[..., MockEndpoint]) -> None:
    """The start row is refused and nothing tells the classes: the run ends with a note."""
    mock = endpoint(script={1: (422, "invalid_input", {})})
    report, _ = run(plan("inversion", 100), None, client=mock.client())
    assert report["stopped"] == "no_answer"
    assert any("first query" in note for note in report["notes"])
    assert report["queries"]["rejected"] == {"invalid_input": 1}


@pytest.mark.parametrize("attack", ["label-only", "extraction"])
def test_nothing_answered_is_not_scored(
    digits: Digits, endpoint: Callable[..., MockEndpoint], attack: str
) -> None:
    """Every request refused (e.g. a wrong field): the budget is spent on refusals and
    no leakage score is given, not a chance-level one that reads as "no leak"."""
    mock = endpoint(script={n: (400, "bad_request", {}) for n in range(1, 100)})
    reference = Reference(digits.x_test, digits.y_test)
    report, _ = run(plan(attack, 40), reference, client=mock.client())
    assert report["queries"]["answered"] == 0
    assert report["stopped"] == "budget"
    assert report["leakage"] is None and report["evaluation"] is None
    assert any("answered no query" in note for note in report["notes"])


def test_split_pool_and_held_out(digits: Digits) -> None:
    """One seeded permutation: pool and held-out rows are disjoint halves, labels aligned."""
    reference = Reference(digits.x_test, digits.y_test)
    split = reference.split(3)
    assert len(split.pool_x) == len(split.pool_y) == len(reference.x) // 2
    assert len(split.held_x) + len(split.pool_x) == len(reference.x)
    rows = {row.tobytes(): label for row, label in zip(reference.x, reference.y, strict=True)}
    for x, y in ((split.pool_x, split.pool_y), (split.held_x, split.held_y)):
        assert all(rows[row.tobytes()] == label for row, label in zip(x, y, strict=True))
    again = reference.split(3)
    assert np.array_equal(again.pool_x, split.pool_x)
    assert np.array_equal(again.held_y, split.held_y)


def test_reference_file_not_an_npz(tmp_path: Path, digits: Digits) -> None:
    """A .npy, a truncated or a damaged archive: ValueError, never TypeError or BadZipFile."""
    npy = tmp_path / "x.npy"
    np.save(npy, digits.x_test)
    with pytest.raises(ValueError, match="not an .npz archive"):
        Reference.load(npy)
    good = tmp_path / "good.npz"
    np.savez(good, x=digits.x_test, y=digits.y_test)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable .npz"):
        Reference.load(truncated)
    damaged = bytearray(data)
    damaged[300] ^= 0xFF  # inside x's data: a CRC error on reading
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="damaged"):
        Reference.load(tmp_path / "damaged.npz")
