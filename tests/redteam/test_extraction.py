"""Extraction by every strategy through an in-process endpoint, scored as gain over own data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bento_invguard.redteam import (
    STRATEGIES,
    ExtractionSettings,
    InputSpace,
    Labelled,
    Oracle,
    Plan,
    Reference,
    extract,
    run,
)

from .conftest import Digits, MockEndpoint

URL = "http://model.test/predict"


def plan(budget: int, strategy: str, seed: int = 0) -> Plan:
    return Plan(
        attack="extraction", url=URL, budget=budget, shape=(64,), low=0, high=16,
        strategy=strategy, seed=seed,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_a_copy(
    strategy: str, digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """Labels only, 300 rows: a copy that agrees with the endpoint; the score is the gain."""
    reference = Reference(digits.x_test, digits.y_test)
    report, result = run(plan(300, strategy), reference, client=endpoint(mode="label").client())
    assert result.copy is not None
    assert strategy == report["details"]["strategy"]
    assert 299 == report["details"]["trained_on"]  # the budget minus the first contact
    leakage = report["leakage"]
    assert leakage["agreement"] > 0.85
    assert round(leakage["agreement"] - leakage["public_baseline"], 4) == leakage["score"]
    assert -0.1 < leakage["score"] < 0.1  # a linear model: the attacker's own rows are most of it


@pytest.mark.parametrize("strategy", ["uniform", "blend", "jacobian", "knockoff"])
def test_same_seed_same_queries(
    strategy: str, digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """The seed fixes every row sent."""
    reference = Reference(digits.x_test, digits.y_test)
    sent = []
    for _ in range(2):
        mock = endpoint(mode="label")
        run(plan(120, strategy, seed=5), reference, client=mock.client())
        sent.append(mock.bodies)
    assert sent[0] == sent[1]


def test_jacobian_grows_its_set_round_by_round(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """100 seeds, then one augmented row per labelled row each round: 100, 100, 200, ..."""
    reference = Reference(digits.x_test, digits.y_test)
    mock = endpoint(mode="label")
    report, _ = run(plan(701, "jacobian"), reference, client=mock.client())
    assert 4 == report["details"]["jacobian_rounds"]  # 100 + 100 + 200 + 300 of 400
    assert 700 == report["details"]["trained_on"]


def test_answers_without_information_gain_nothing(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """Random labels (what a silent answer is worth) drag the copy below the attacker's own data."""
    reference = Reference(digits.x_test, digits.y_test)
    noise = endpoint(mode="label")
    noise.model = _RandomLabels()
    report, _ = run(
        plan(2000, "uniform"),
        reference,
        client=noise.client(),
        holdout_labels=lambda x: digits.model.predict_proba(x).argmax(axis=1),
    )
    assert report["leakage"]["score"] < 0.0


class _RandomLabels:
    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.eye(10)[self.rng.integers(0, 10, size=len(x))])


def test_nothing_answered_leaves_the_own_data_copy(
    digits: Digits, endpoint: Callable[..., MockEndpoint]
) -> None:
    """Every query refused as invalid: the copy is the attacker's own data, gain 0."""
    reference = Reference(digits.x_test, digits.y_test)
    mock = endpoint(script={n: (422, "invalid_input", {}) for n in range(2, 12)})
    report, result = run(plan(200, "knockoff"), reference, client=mock.client())
    assert 0 == report["details"]["trained_on"]
    assert result.copy is not None
    assert 0.0 == report["leakage"]["score"]


def test_blend_needs_public_rows(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    space = InputSpace.from_range(64, 0.0, 16.0)
    with (
        endpoint().client() as client,
        Oracle(URL, budget=10, client=client) as oracle,
        pytest.raises(ValueError, match="public rows"),
    ):
        extract(oracle, space, None, ExtractionSettings("blend"))


def test_own_rows_join_the_answers(digits: Digits, endpoint: Callable[..., MockEndpoint]) -> None:
    """The copy learns from the attacker's labelled rows beside the answers it bought."""
    space = InputSpace.from_rows(digits.x_test, 0.0, 16.0)
    own = Labelled(digits.x_test[:100], digits.y_test[:100])
    with endpoint(mode="label").client() as client, Oracle(URL, budget=40, client=client) as oracle:
        result = extract(oracle, space, own.x, ExtractionSettings("uniform"), own)
    assert result.copy is not None
    assert 40 == result.details["trained_on"]
    # 40 uniform rows alone cannot reach this: the own rows are in the copy.
    truth = digits.model.predict_proba(digits.x_test[100:]).argmax(axis=1)
    assert (result.copy.predict(digits.x_test[100:]) == truth).mean() > 0.8
