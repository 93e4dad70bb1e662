"""An empty model store per test, and a policy with a profile on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bento_invguard import Profile, hash_key

ROWS = np.random.default_rng(3).random((60, 4)) * 10.0
PUBLIC_KEY = "public-key-for-tests"


@pytest.fixture
def model_store(tmp_path: Path) -> Iterator[Any]:
    """BentoML's global model store pointed at an empty folder for one test."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    previous = BentoMLContainer.model_store.get()
    store = ModelStore(tmp_path / "models")
    BentoMLContainer.model_store.set(store)
    try:
        yield store
    finally:
        BentoMLContainer.model_store.set(previous)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    """A policy with a relative key file and a relative profile, as users write them."""
    folder = tmp_path / "project"
    folder.mkdir()
    Profile.fit(ROWS).save(folder / "train.profile.json")
    (folder / "keys.yaml").write_text(
        yaml.safe_dump({"keys": [{"id": "p", "sha256": hash_key(PUBLIC_KEY), "tier": "public"}]})
    )
    path = folder / "invguard.yaml"
    path.write_text(
        "# the team's policy\n"
        + yaml.safe_dump(
            {
                "keys_from": {"file": "keys.yaml", "env": "INVGUARD_KEYS"},
                "tiers": {"public": {"output": "label"}, "trusted": {"output": "full"}},
                "input": {"shape": [4], "min": 0.0, "max": 10.0, "profile": "train.profile.json"},
            }
        )
    )
    return path


def save_model(name: str = "clf") -> Any:
    """A saved model with one weights file and nothing attached."""
    import bentoml

    with bentoml.models.create(name) as model:
        np.savez(model.path_of("weights.npz"), w=np.ones(4))
    return bentoml.models.get(model.tag)
