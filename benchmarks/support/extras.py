"""Optional measurements a benchmark script runs on request, one option each.

An :class:`Extra` names a command-line option and a function in a support
module. The function takes ``quick`` (the script's ``--quick``, False where
it has none) and returns its
markdown table, or a pair of the table and its figures (a JSON-able dict).
The script prints each table after its own, and writes the figures to
``benchmarks/results/<option>.json``. ``--only-extras`` skips the script's own
measurement.

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_options(parser, (Extra("--demo", "support.demo", "table", "a demo figure"),))
>>> parser.parse_args(["--demo"]).demo
True
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Extra:
    option: str  # "--watermark"
    module: str  # "support.watermark"
    function: str  # "table"
    help: str

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")


def add_options(parser: argparse.ArgumentParser, extras: Sequence[Extra]) -> None:
    """One flag per extra, and ``--only-extras``."""
    for extra in extras:
        parser.add_argument(extra.option, action="store_true", help=extra.help)
    parser.add_argument(
        "--only-extras", action="store_true", help="run only the extra measurements asked for"
    )


def run_selected(args: argparse.Namespace, extras: Sequence[Extra], results: Path) -> None:
    """Run every extra whose option is set; print its table, write its figures."""
    for extra in extras:
        if not getattr(args, extra.dest):
            continue
        function = getattr(importlib.import_module(extra.module), extra.function)
        out: Any = function(quick=bool(getattr(args, "quick", False)))
        text, figures = out if isinstance(out, tuple) else (out, None)
        print(f"\n{text}")
        if figures is not None:
            results.mkdir(parents=True, exist_ok=True)
            (results / f"{extra.dest}.json").write_text(json.dumps(figures, indent=1) + "\n")
