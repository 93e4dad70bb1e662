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
