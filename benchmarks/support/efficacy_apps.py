"""The defences efficacy.py compares, as served apps, and the keys that reach them.

Three ``bentoml serve`` apps from one copy of the digits example: ``plain``
(the model unguarded, and behind each of ART's output postprocessors),
``outputs`` (the guard with one output mode per tier, nothing else) and
``default`` (the example's policy, plus a ``monitor`` tier with full scores).
A :class:`Config` names one defence: which app, which path, which tier.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bento_invguard import generate_key

from .serving import launch_serve

ART_POSTPROCESSORS = {
    "art_rounded": "Rounded()",
    "art_reverse_sigmoid": "ReverseSigmoid()",
    "art_gaussian_noise": "GaussianNoise()",
    "art_class_labels": "ClassLabels()",
    "art_class_labels_per_row": "ClassLabels()",  # applied to one row at a time, see below
}

PLAIN_SERVICE = '''"""The digits model unguarded, and behind ART's output postprocessors."""

import bentoml
import numpy as np
from art.defences.postprocessor import ClassLabels, GaussianNoise, ReverseSigmoid, Rounded
from model import MODEL_NAME, SoftmaxModel

POST = {POSTPROCESSORS}


@bentoml.service(name="digits_plain")
class Plain:
    stored_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        self.model = SoftmaxModel.load(self.stored_model.path_of("weights.npz"))

    @bentoml.api
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)

{ENDPOINTS}
'''

ART_ENDPOINT = """    @bentoml.api
    def {name}(self, x: np.ndarray) -> np.ndarray:
        return POST["{name}"](self.model.predict_proba(x))
"""
# ART 1.20.1's ClassLabels sets ``labels[:, argmax_of_every_row] = 1``: with more
# than one row per call, every row gets a 1 in the predicted class of every row
# of the batch. The per-row endpoint calls it one row at a time (what it means to do).
ART_PER_ROW = """    @bentoml.api
    def {name}(self, x: np.ndarray) -> np.ndarray:
        scores = self.model.predict_proba(x)
        return np.vstack([POST["{name}"](row[np.newaxis]) for row in scores])
"""

OUTPUTS_POLICY: dict[str, Any] = {
    "version": 1,
    "keys_from": {"env": "INVGUARD_KEYS"},
    "anonymous_tier": None,
    "storage": "memory://",
    "tiers": {
        "label": {"output": "label", "endpoints": ["predict"]},
        "top_k": {"output": "top_k", "k": 3, "decimals": 2, "endpoints": ["predict"]},
        "rounded": {"output": "rounded", "decimals": 2, "endpoints": ["predict"]},
    },
    "input": {"shape": [64], "dtype": "float", "min": 0.0, "max": 16.0, "max_rows": 256},
    "monitor": {"enabled": False},
}


def _per_row(name: str) -> str:
    return ", one row per call" if name.endswith("_per_row") else ""


@dataclass(frozen=True)
class Config:
    """One defence: which server, which path, which tier's key."""

    name: str
    server: str  # plain, outputs, default
    path: str
    tier: str | None  # None: no key (unguarded server)
    what: str


CONFIGS = (
    Config("none", "plain", "/predict", None, "no guard"),
    Config("label", "outputs", "/predict", "label", "guard: output label alone"),
    Config("top_k", "outputs", "/predict", "top_k", "guard: output top_k (3, 2 decimals) alone"),
    Config("rounded", "outputs", "/predict", "rounded", "guard: output rounded (2) alone"),
    Config("monitor", "default", "/predict", "monitor", "guard: monitor alone (full scores)"),
    Config("default_public", "default", "/predict", "public", "default policy, public key"),
    Config("default_partner", "default", "/predict", "partner", "default policy, partner key"),
    Config("default_trusted", "default", "/predict", "trusted", "default policy, trusted key"),
    *(
        Config(name, "plain", f"/{name}", None, f"ART {call}" + _per_row(name))
        for name, call in ART_POSTPROCESSORS.items()
    ),
)
ATTACKS = ("inversion", "label-only", "extraction")


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path


def write_apps(app_dir: Path) -> None:
    """The unguarded/ART service, the outputs-only service and policy, the monitor tier."""
    post = "{\n" + "".join(f'    "{n}": {c},\n' for n, c in ART_POSTPROCESSORS.items()) + "}"
    endpoints = "\n".join(
        (ART_PER_ROW if n.endswith("_per_row") else ART_ENDPOINT).format(name=n)
        for n in ART_POSTPROCESSORS
    )
    plain = PLAIN_SERVICE.replace("{POSTPROCESSORS}", post).replace("{ENDPOINTS}", endpoints)
    (app_dir / "efficacy_plain.py").write_text(plain)
    service = (app_dir / "service.py").read_text()
    (app_dir / "efficacy_outputs.py").write_text(
        service.replace('"invguard.yaml"', '"policy_outputs.yaml"')
    )
    (app_dir / "policy_outputs.yaml").write_text(yaml.safe_dump(OUTPUTS_POLICY))
    policy = yaml.safe_load((app_dir / "invguard.yaml").read_text())
    policy["tiers"]["monitor"] = {"output": "full", "endpoints": ["predict"]}
    (app_dir / "invguard.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))


def start(name: str, target: str, app_dir: Path, env: dict[str, str], root: Path) -> Server:
    log_path = root / f"{name}.log"
    proc, url = launch_serve(app_dir, env, log_path, target)
    return Server(name, url, proc, log_path)


@dataclass
class Keys:
    """Fresh keys per server: ``take(config)`` hands out a new principal of the config's tier."""

    by_server: dict[str, dict[str, str]]

    def take(self, config: Config) -> str | None:
        if config.tier is None:
            return None
        key = generate_key()
        pool = self.by_server.setdefault(config.server, {})
        pool[f"it-{config.tier}-{len(pool)}"] = key
        return key


def plan_keys(keys: Keys) -> dict[tuple[str, str], str | None]:
    """One key per (configuration, attack), made before the servers start."""
    return {(c.name, a): keys.take(c) for c in CONFIGS for a in ATTACKS}
