"""The digits example as the cost benchmarks serve it, and its benign traffic.

Importing this module makes a scratch dir and points ``BENTOML_HOME`` at it
(before BentoML is imported), so nothing is written to the user's home; the
benchmark deletes ``SCRATCH`` at the end. :func:`prepare_app` copies and
trains the example, adds an unguarded twin of its service and lifts its rate
limits out of reach; :func:`core_controls` keeps the foundation's controls
only; :class:`Traffic` hands out one-row requests from many keys per tier.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "examples" / "digits"
HOST = "127.0.0.1"
TIERS = ("public", "partner", "trusted")
LIFTED_LIMIT = 10**9  # rows per window: counted, never reached
KEYS_PER_TIER = 16  # principals per tier in the generated traffic

# Scratch space: everything BentoML writes goes here, never to the user's home.
SCRATCH = Path(tempfile.mkdtemp(prefix="invguard-bench-"))
BENTOML_HOME = SCRATCH / "bentoml_home"
BENTOML_HOME.mkdir()
os.environ["BENTOML_HOME"] = str(BENTOML_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from bento_invguard import generate_key, hash_key  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare_app(root: Path) -> tuple[Path, Path]:
    """Copy the example, add an unguarded twin of service.py, train into BENTOML_HOME."""
    app = root / "digits"
    shutil.copytree(
        EXAMPLE_DIR, app, ignore=shutil.ignore_patterns("keys.yaml", ".demo-keys", "__pycache__")
    )
    source = (app / "service.py").read_text()
    plain = source.replace('@protect("invguard.yaml")\n', "").replace(
        "from bento_invguard import protect\n", ""
    )
    if plain == source or "protect" in plain.replace("protected", ""):
        raise SystemExit("could not derive the unguarded service from examples/digits/service.py")
    (app / "service_plain.py").write_text(plain)
    lift_rate_limits(app / "invguard.yaml")
    out = subprocess.run(
        [sys.executable, "train.py"],
        cwd=app,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"train.py failed:\n{out.stdout}\n{out.stderr}")
    weights = sorted(BENTOML_HOME.glob("models/invguard_digits/*/weights.npz"))
    if len(weights) != 1:
        raise SystemExit(f"expected one trained model in {BENTOML_HOME}, found {weights}")
    return app, weights[0]


#: Rate limits as the example configures them, and as this benchmark runs them.
RATE_LIMITS: dict[str, dict[str, str]] = {}


def lift_rate_limits(policy_path: Path) -> None:
    """Keep every tier's rate-limit windows but make them too large to ever refuse.

    The example limits each principal (e.g. public: 20 rows a second); a
    throughput benchmark would only measure 429s. The same windows are still
    counted, in the same storage, on every request.
    """
    data = yaml.safe_load(policy_path.read_text())
    for name, tier in (data.get("tiers") or {}).items():
        spec = tier.get("rate_limit")
        if not spec:
            continue
        lifted = ";".join(
            f"{LIFTED_LIMIT}/{part.strip().split('/', 1)[1]}"
            for part in spec.split(";")
            if part.strip()
        )
        RATE_LIMITS[name] = {"example": spec, "benchmark": lifted}
        tier["rate_limit"] = lifted
    policy_path.write_text(yaml.safe_dump(data, sort_keys=False))


def core_controls(policy_path: Path) -> None:
    """The foundation's controls only: no rate limits, no monitor, no audit trail."""
    data = yaml.safe_load(policy_path.read_text())
    for tier in (data.get("tiers") or {}).values():
        tier.pop("rate_limit", None)
    data["monitor"] = {"enabled": False}
    data["audit"] = {"sink": "none"}
    policy_path.write_text(yaml.safe_dump(data, sort_keys=False))


class ExampleApps(NamedTuple):
    """The example trained into a scratch dir, and its copy with the foundation's controls."""

    app_dir: Path
    core_dir: Path
    keys: dict[str, list[str]]
    rows: np.ndarray


def prepare_example_apps(scratch: Path) -> ExampleApps:
    """Train the example into ``scratch``, copy it with :func:`core_controls`, and put
    fresh keys per tier in ``INVGUARD_KEYS`` (read by every server started after)."""
    log("training the digits example into a temp BENTOML_HOME ...")
    app_dir, weights = prepare_app(scratch)
    keys = {tier: [generate_key() for _ in range(KEYS_PER_TIER)] for tier in TIERS}
    os.environ["INVGUARD_KEYS"] = keys_env(keys)
    _, rows = load_example(app_dir, weights)
    core_dir = app_dir.with_name("digits_core")
    shutil.copytree(app_dir, core_dir, ignore=shutil.ignore_patterns("__pycache__"))
    core_controls(core_dir / "invguard.yaml")
    return ExampleApps(app_dir, core_dir, keys, rows)


def keys_env(keys: dict[str, list[str]]) -> str:
    return json.dumps(
        [
            {"id": f"bench-{tier}-{n}", "sha256": hash_key(key), "tier": tier}
            for tier, pool in keys.items()
            for n, key in enumerate(pool)
        ],
        separators=(",", ":"),
    )


class Traffic:
    """Benign traffic: distinct real digits, from many principals per tier.

    Request ``i`` of a tier carries key ``i % KEYS_PER_TIER`` and digit
    ``i % len(rows)``; the two counts are coprime, so a principal meets the
    same digit again only after every principal has sent every digit once. No
    principal looks like a prober to the monitor, and the rate limiter counts
    many principals, as in a real deployment.
    """

    def __init__(self, keys: dict[str, list[str]], rows: np.ndarray) -> None:
        self.keys = keys
        self.rows = rows
        self.bodies = [json.dumps({"x": [row.tolist()]}).encode() for row in rows]
        self._next = {tier: itertools.count() for tier in keys}

    def take(self, tier: str) -> tuple[str, bytes, np.ndarray]:
        """The next request of a tier: its key, its JSON body and its row (1, 64)."""
        i = next(self._next[tier])  # itertools.count is safe across threads
        pool = self.keys[tier]
        j = i % len(self.rows)
        return pool[i % len(pool)], self.bodies[j], self.rows[j : j + 1]


def load_example(app: Path, weights: Path) -> tuple[Any, np.ndarray]:
    """The trained model and the digits the policy accepts (an odd number of them).

    Of the 1797 digits (training and held-out), the few held-out ones that
    fall outside the reference profile would get a 422; they are left out.
    The count is made odd, so that it is coprime with KEYS_PER_TIER.
    """
    from bento_invguard import Profile

    sys.path.insert(0, str(app))
    from model import SoftmaxModel, load_split  # type: ignore[import-not-found]

    x_train, x_test, _, _ = load_split()
    rows = np.concatenate([x_test, x_train])
    profile = Profile.load(app / "digits.profile.json")
    rows = rows[[profile.first_violation(rows[i : i + 1]) is None for i in range(len(rows))]]
    if len(rows) % 2 == 0:
        rows = rows[:-1]
    return SoftmaxModel.load(str(weights)), rows


def server_env(name: str) -> dict[str, str]:
    """Environment of one server: its own BENTOML_HOME (with the trained model).

    ``bentoml serve`` wipes ``$BENTOML_HOME/prometheus_multiproc_dir`` at start,
    so two servers must not share a home.
    """
    home = SCRATCH / f"home_{name}"
    shutil.copytree(BENTOML_HOME / "models", home / "models")
    env = dict(os.environ, PYTHONUNBUFFERED="1", BENTOML_HOME=str(home))
    env.pop("INVGUARD_POLICY", None)
    return env
