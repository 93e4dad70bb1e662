"""docs/cli.md shows what the commands print: each example is run and compared.

Regenerate with ``INVGUARD_WRITE_DOCS=1`` (see tests/cli/doc_blocks.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .doc_blocks import CLI_DOC, WRITE_ENV, examples, rewrite, run, sandbox


def test_the_cli_page_has_examples_of_every_command_that_prints() -> None:
    """init, keygen, check, profile fit and audit each have a checked example."""
    commands = " ".join(e.command for e in examples(CLI_DOC.read_text()))
    for name in ("init", "keygen", "check", "profile fit", "audit"):
        assert f"invguard {name}" in commands, name


def test_every_example_of_the_cli_page_prints_what_it_shows(tmp_path: Path) -> None:
    """Run each example in order on fixed inputs; its output is the block's text."""
    text = CLI_DOC.read_text()
    folder = sandbox(tmp_path)
    outputs = [run(e.command, folder) for e in examples(text)]
    if os.environ.get(WRITE_ENV):
        CLI_DOC.write_text(rewrite(text, outputs))
        pytest.skip(f"{CLI_DOC} rewritten from the commands' output")
    for example, output in zip(examples(text), outputs, strict=True):
        assert output.rstrip("\n") == example.shown.rstrip("\n"), example.command


README = CLI_DOC.parents[1] / "README.md"


def _readme_block(after: str, language: str) -> str:
    text = README.read_text()
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start : text.index("```", start)]


def test_the_readme_policy_passes_audit_without_a_high_finding(tmp_path: Path) -> None:
    """The README's policy, pasted as is beside its profile and a key file."""
    import json
    import shutil

    import yaml

    from bento_invguard import hash_key

    from .doc_blocks import REPO, run

    (tmp_path / "invguard.yaml").write_text(_readme_block("## The policy", "yaml"))
    shutil.copy(REPO / "examples" / "digits" / "digits.profile.json", tmp_path)
    keys = [{"id": t, "sha256": hash_key(t), "tier": t} for t in ("public", "partner", "trusted")]
    (tmp_path / "keys.yaml").write_text(yaml.safe_dump({"keys": keys}))
    report = json.loads(run("invguard audit invguard.yaml --json", tmp_path))
    assert [] == [f for f in report["findings"] if f["severity"] == "high"], report["findings"]
    policy_tiers = yaml.safe_load((tmp_path / "invguard.yaml").read_text())["tiers"]
    assert all("endpoints" in tier for tier in policy_tiers.values())


def test_the_readme_422_example_is_what_the_validator_answers() -> None:
    """The README's range refusal: the same body, position included."""
    import json

    import numpy as np

    from bento_invguard import InvalidInput, Policy
    from bento_invguard.context import QueryContext
    from bento_invguard.validation import InputValidator

    shown = json.loads(_readme_block("## HTTP contract", "json"))
    policy = Policy.model_validate(
        {"tiers": {"public": {}}, "input": {"shape": [64], "min": 0.0, "max": 16.0}}
    )
    row = np.zeros((1, 64))
    row[0, 5] = 17.0
    with pytest.raises(InvalidInput) as refused:
        InputValidator(policy.input)(QueryContext(endpoint="predict"), row)
    assert shown == refused.value.body()
