"""The digits example shipped as a bento: build, export, import into a clean home, serve.

Two bentos are built from one trained model: one carries the policy file in
its source (``protect("invguard.yaml")``), the other reads the policy attached
to the model (``protect(policy_from=...)``) and carries no policy file. Both
carry bento_invguard as a wheel built from this repository, as
``examples/digits/bentofile.yaml`` says. Each is exported, imported into a
second, empty ``BENTOML_HOME`` and served from there with ``bentoml serve <tag>``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from benchmarks.support.serving import (
    HOST,
    bentoml_command,
    copy_example,
    free_port,
    load_module,
    server_env,
    stop_process_tree,
    train,
    wait_ready,
)

from bento_invguard import generate_key

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TIERS = ("public", "partner", "trusted")
STEP_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 60.0
PROTECT_FILE = '@protect("invguard.yaml")'
PROTECT_MODEL = '@protect(policy_from=f"{MODEL_NAME}:latest")'
VARIANTS = ("policy file", "attached policy")


@dataclass
class Shipped:
    root: Path
    home: Path  # the second BENTOML_HOME, holding only what `bentoml import` put there
    tags: dict[str, str]
    keys: dict[str, str]
    rows: np.ndarray


def run_step(argv: list[str], *, cwd: Path, env: dict[str, str]) -> str:
    """Run one build step; fail the test with its output if it fails."""
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(argv)} exited with {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    return result.stdout


def build_wheel(dest: Path) -> Path:
    """A wheel of this repository, built from a copy (never from a stale build/ folder)."""
    source = dest / "source"
    shutil.copytree(
        REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, source / name)
    out = dest / "wheels"
    run_step(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source), "-w", str(out)],
        cwd=dest,
        env=_env(dest, {}),
    )
    (wheel,) = out.glob("bento_invguard-*.whl")
    return wheel


def prepare_app(app: Path, wheel: Path) -> None:
    """Put the wheel where bentofile.yaml says, and add the attached-policy variant."""
    bentofile = yaml.safe_load((app / "bentofile.yaml").read_text())
    wheels = [w for w in bentofile["python"].get("wheels", []) if "bento_invguard" in w]
    assert len(wheels) == 1, "examples/digits/bentofile.yaml must ship bento_invguard as a wheel"
    assert Path(wheels[0]).name == wheel.name, (
        f"examples/digits/bentofile.yaml names {wheels[0]}, but this repository builds "
        f"{wheel.name}: update the bentofile"
    )
    (app / wheels[0]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(wheel, app / wheels[0])
    # Locking would resolve numpy on PyPI and install uv into this venv: not in a test.
    bentofile["python"]["lock_packages"] = False
    (app / "bentofile.yaml").write_text(yaml.safe_dump(bentofile))

    service = (app / "service.py").read_text()
    assert PROTECT_FILE in service
    (app / "service_attached.py").write_text(service.replace(PROTECT_FILE, PROTECT_MODEL))
    attached = dict(bentofile, service="service_attached:DigitsClassifier", include=["*.py"])
    (app / "bentofile_attached.yaml").write_text(yaml.safe_dump(attached))


def _env(home: Path, keys: dict[str, str]) -> dict[str, str]:
    """server_env with key ids in its it-<tier>-<n> form."""
    return server_env(home, {f"it-{tier}-0": key for tier, key in keys.items()})


def build_bento(app: Path, bentofile: str, env: dict[str, str]) -> str:
    out = run_step([*bentoml_command(), "build", "-f", bentofile, "-o", "tag"], cwd=app, env=env)
    match = re.search(r"__tag__:(\S+)", out)
    assert match, out
    return match.group(1)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    root = tmp_path_factory.mktemp("bento_roundtrip")
    app = copy_example(root / "digits")
    prepare_app(app, build_wheel(root / "wheel"))
    keys = {tier: generate_key() for tier in TIERS}

    build_env = _env(root / "home_build", keys)
    train(app, build_env, root / "train.log")
    run_step(
        [sys.executable, "-c", "import bento_invguard as ig; "
         "ig.attach('invguard_digits:latest', 'invguard.yaml')"],
        cwd=app,
        env=build_env,
    )  # fmt: skip
    files = {"policy file": "bentofile.yaml", "attached policy": "bentofile_attached.yaml"}
    tags = {variant: build_bento(app, name, build_env) for variant, name in files.items()}

    home = root / "home_serve"
    home.mkdir()
    serve_env = _env(home, keys)
    for variant, tag in tags.items():
        exported = root / f"{variant.replace(' ', '_')}.bento"
        run_step([*bentoml_command(), "export", tag, str(exported)], cwd=root, env=build_env)
        run_step([*bentoml_command(), "import", str(exported)], cwd=root, env=serve_env)

    x_train = load_module(app / "model.py", "invguard_roundtrip_model").load_split()[0]
    return Shipped(root=root, home=home, tags=tags, keys=keys, rows=x_train[:4])


@contextlib.contextmanager
def serving(shipped: Shipped, tag: str, home: Path) -> Iterator[httpx.Client]:
    """``bentoml serve <tag>`` from ``home``, outside any project folder."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    log = shipped.root / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*bentoml_command(), "serve", tag, "--host", HOST, "--port", str(port)],
            cwd=shipped.root,
            env=_env(home, shipped.keys),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(proc, base_url, log)
        with httpx.Client(base_url=base_url, timeout=15.0) as client:
            yield client
    finally:
        stop_process_tree(proc)


def bento_dir(shipped: Shipped, variant: str) -> Path:
    name, version = shipped.tags[variant].split(":")
    return shipped.home / "bentos" / name / version


@pytest.mark.parametrize("variant", VARIANTS)
def test_bento_carries_the_package_as_a_wheel(shipped: Shipped, variant: str) -> None:
    """The imported bento holds the bento_invguard wheel, and requirements do not ask PyPI."""
    python = bento_dir(shipped, variant) / "env" / "python"
    (wheel,) = (python / "wheels").glob("bento_invguard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "invguard = bento_invguard.cli:main" in archive.read(entry_points).decode()
    for module in ("__init__.py", "integration/protect.py", "artifacts/load.py", "cli/main.py"):
        assert f"bento_invguard/{module}" in names
    assert "bento-invguard" not in (python / "requirements.txt").read_text()


def test_attached_bento_has_no_policy_file(shipped: Shipped) -> None:
    """The policy reaches the attached-policy bento only inside its model."""
    src = bento_dir(shipped, "attached policy") / "src"
    assert not (src / "invguard.yaml").exists()
    (model_dir,) = (shipped.home / "models" / "invguard_digits").glob("*/invguard")
    assert {"policy.yaml", "profile.json", "manifest.json"} == {p.name for p in model_dir.iterdir()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_imported_bento_serves_guarded(shipped: Shipped, variant: str) -> None:
    """From the clean home: no key is 401 JSON, public gets one-hot labels, trusted full."""
    body = json.dumps({"x": shipped.rows.tolist()})
    headers = {"content-type": "application/json"}
    with serving(shipped, shipped.tags[variant], shipped.home) as client:
        refused = client.post("/predict", content=body, headers=headers)
        public = client.post(
            "/predict",
            content=body,
            headers={**headers, "Authorization": f"Bearer {shipped.keys['public']}"},
        )
        trusted = client.post(
            "/predict",
            content=body,
            headers={**headers, "Authorization": f"Bearer {shipped.keys['trusted']}"},
        )
    assert 401 == refused.status_code, refused.text
    assert "unauthenticated" == refused.json()["error"]
    assert refused.json()["detail"]
    assert 200 == public.status_code, public.text
    labels = np.array(public.json())
    assert (len(shipped.rows), 10) == labels.shape
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert [1.0] * len(shipped.rows) == labels.sum(axis=1).tolist()
    assert 200 == trusted.status_code, trusted.text
    scores = np.array(trusted.json())
    assert np.allclose(1.0, scores.sum(axis=1))
    assert ((scores > 0) & (scores < 1)).any(), "the trusted tier should see full scores"
    assert (scores.argmax(axis=1) == labels.argmax(axis=1)).all()


def test_tampered_attached_policy_refuses_to_start(shipped: Shipped) -> None:
    """An attached policy edited after attach(): the server exits, naming model and file."""
    home = shipped.root / "home_tampered"
    shutil.copytree(shipped.home, home, symlinks=True)
    (policy,) = (home / "models" / "invguard_digits").glob("*/invguard/policy.yaml")
    policy.write_text(policy.read_text().replace("output: label", "output: full"))
    model_tag = f"invguard_digits:{policy.parent.parent.name}"

    log = shipped.root / "serve-tampered.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*bentoml_command(), "serve", shipped.tags["attached policy"],
             "--host", HOST, "--port", str(free_port())],
            cwd=shipped.root,
            env=_env(home, shipped.keys),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        code = proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        stop_process_tree(proc)
    output = log.read_text(errors="replace")
    assert code not in (None, 0), f"the server should have refused to start:\n{output[-3000:]}"
    assert model_tag in output
    assert "invguard/policy.yaml does not match" in output


def test_audit_an_imported_bento_by_tag(shipped: Shipped) -> None:
    """`invguard audit <bento tag>` loads the bento from the store and reports its APIs."""
    script = Path(sys.executable).with_name("invguard")
    result = subprocess.run(
        [str(script), "audit", shipped.tags["attached policy"], "--json"],
        cwd=shipped.root,
        env=_env(shipped.home, shipped.keys),
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert {"kind": "service", "name": "digits_classifier"} == report["target"]
    apis = {api["name"]: api for api in report["apis"]}
    assert {"predict", "logits"} == set(apis)
    assert {"protect"} == {api["guarded_by"] for api in apis.values()}
    access = apis["predict"]["controls"]["access_control"]["detail"]
    assert "public 1, partner 1, trusted 1" in access  # the keys of INVGUARD_KEYS
    assert (
        1 if any(f["severity"] == "high" for f in report["findings"]) else 0
    ) == result.returncode
