"""The ``invguard`` entry point: argument parsing, dispatch, errors and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import GuardConfigError
from . import (
    attack,
    audit,
    blocks,
    check,
    flagged,
    init_cmd,
    keygen,
    profile_cmd,
    verify_copy,
)
from .errors import EXIT_PROBLEMS, EXIT_USAGE, CliError

COMMANDS = (init_cmd, keygen, check, profile_cmd, audit, blocks, flagged, attack, verify_copy)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="invguard",
        description=(
            "Set up and review bento_invguard, the BentoML guard against model inversion "
            "and extraction (OWASP ML03). Exit codes: 0 ok, 1 check failed or problems "
            "found, 2 bad arguments or a bad file."
        ),
    )
    parser.add_argument("--version", action="version", version=f"invguard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``invguard`` with ``argv`` (default: the process arguments); return the exit code.

    >>> main(["check", "invguard.yaml"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.handler(args))
    except CliError as exc:
        _error(args, str(exc))
        return exc.code
    except GuardConfigError as exc:
        _error(args, str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `invguard audit ... | head`: the reader left, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PROBLEMS


def _error(args: argparse.Namespace, message: str) -> None:
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    print(f"invguard {command}: error: {message}", file=sys.stderr)
