"""The digits example's data and a profile fitted on it, shared by the profile tests."""

from __future__ import annotations

import numpy as np
import pytest

from bento_invguard import Profile

from ..conftest import digits_module


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """(x_train, x_test) of the example's split."""
    x_train, x_test, _, _ = digits_module("model").load_split()  # type: ignore[attr-defined]
    return x_train, x_test


@pytest.fixture(scope="session")
def profile(digits: tuple[np.ndarray, np.ndarray]) -> Profile:
    """The default profile of the training rows (Profile is frozen: safe to share)."""
    return Profile.fit(digits[0])
