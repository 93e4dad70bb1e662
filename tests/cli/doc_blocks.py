"""The command examples of docs/cli.md, run for real: find them, run them, rewrite them.

A checked example is a ```console block whose first line is ``$ <command>``
naming ``invguard``; the rest of the block is what the command prints
(stdout and stderr). Every example runs, in the order of the page, in one
sandbox folder: ``examples/digits`` (a copy, with three tier keys and an admin
key), a policy made by ``invguard init .``, the example's training rows as
``x_train.npy`` and an invalid ``bad.yaml``. What must vary from run to run is
normalised: raw keys (``ig_…``) and the sandbox's path (``/srv``).

Regenerate the blocks after a change to what a command prints:

    INVGUARD_WRITE_DOCS=1 .venv/bin/python -m pytest tests/cli/test_docs_cli.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from bento_invguard import hash_key

REPO = Path(__file__).resolve().parents[2]
CLI_DOC = REPO / "docs" / "cli.md"
WRITE_ENV = "INVGUARD_WRITE_DOCS"
_BLOCK = re.compile(r"^```console\n(\$ [^\n]*(?<![\w/-])invguard [^\n]*)\n(.*?)^```$", re.M | re.S)
_KEY = re.compile(r"ig_[A-Za-z0-9_-]+")
BAD_POLICY = "tiers:\n  public:\n    output: everything\n"


@dataclass(frozen=True)
class Example:
    command: str
    shown: str  # the output in the page
    start: int  # where the output starts and ends in the page
    end: int


def examples(text: str) -> list[Example]:
    """The checked examples of a page, in order."""
    return [
        Example(m.group(1)[2:], m.group(2), m.start(2), m.end(2)) for m in _BLOCK.finditer(text)
    ]


def sandbox(folder: Path) -> Path:
    """The fixed inputs every example runs against (see the module's docstring)."""
    digits = folder / "examples" / "digits"
    shutil.copytree(
        REPO / "examples" / "digits",
        digits,
        ignore=shutil.ignore_patterns("keys.yaml", ".demo-keys", "__pycache__", "*.pyc"),
    )
    keys = [
        {"id": f"demo-{tier}", "sha256": hash_key(f"doc-{tier}"), "tier": tier}
        for tier in ("public", "partner", "trusted")
    ]
    admin = [{"id": "demo-admin", "sha256": hash_key("doc-admin")}]
    (digits / "keys.yaml").write_text(yaml.safe_dump({"keys": keys, "admin_keys": admin}))
    subprocess.run([_invguard(), "init", "."], cwd=folder, check=True, capture_output=True)
    sys.path.insert(0, str(digits))
    try:
        from model import load_split  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(digits))
    np.save(folder / "x_train.npy", load_split()[0])
    (folder / "bad.yaml").write_text(BAD_POLICY)
    return folder


def run(command: str, folder: Path) -> str:
    """What ``command`` prints in ``folder`` (stdout then stderr), normalised."""
    env = {
        **os.environ,
        "PATH": f"{Path(_invguard()).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "100",
    }
    env.pop("INVGUARD_KEYS", None)
    done = subprocess.run(
        ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    return normalise(done.stdout + done.stderr, folder)


def normalise(output: str, folder: Path) -> str:
    output = output.replace(str(folder.resolve()), "/srv").replace(str(folder), "/srv")
    return _KEY.sub("ig_…", output)


def rewrite(text: str, outputs: list[str]) -> str:
    """``text`` with the output of each example replaced by ``outputs``, in order."""
    pieces, at = [], 0
    for example, output in zip(examples(text), outputs, strict=True):
        pieces += [text[at : example.start], output if output.endswith("\n") else output + "\n"]
        at = example.end
    return "".join([*pieces, text[at:]])


def _invguard() -> str:
    return str(Path(sys.executable).parent / "invguard")
