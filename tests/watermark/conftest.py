"""The digits theft shared by the verify tests (local functions and a served copy)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from .copies import Theft, steal


@pytest.fixture(scope="session")
def theft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Theft]:
    """Watermarked digits answers, the copy trained on them and an independent model."""
    stolen = steal(tmp_path_factory.mktemp("theft"), "wm_local_suspects")
    sys.path.insert(0, str(stolen.suspects))
    yield stolen
    sys.path.remove(str(stolen.suspects))
    sys.modules.pop(stolen.module_name, None)
