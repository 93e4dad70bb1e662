"""``invguard verify-copy EVIDENCE... --url URL | --function MODULE:FUNCTION``.

Query a suspect model with the inputs a watermarked tier kept, count how
often it answers with their watermark labels, and print the p-value that a
model made without our answers matches that often. Exit 0 when the p-value
is at most ``--alpha`` (the suspect is shown to be a copy), 1 when it is not,
2 on bad arguments, unreadable evidence, or a suspect that does not answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from ..watermark import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_QUERIES,
    Evidence,
    Predictor,
    SuspectError,
    Verdict,
    function_predictor,
    read_evidence,
    url_predictor,
    verify_copy,
)
from .errors import EXIT_OK, EXIT_PROBLEMS, CliError

KEY_ENV = "INVGUARD_SUSPECT_KEY"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "verify-copy",
        help="test whether a suspect model learned a tier's watermark",
        description=(
            "Send the inputs kept by a watermarked tier (its evidence files) to a suspect "
            "model and count the answers equal to their watermark labels. The p-value is "
            "the chance that a model made without our answers matches that often: the "
            "binomial tail with match probability 1/(classes-1) per input, an upper bound "
            "since each label is a keyed-hash draw among the classes other than our top-1. "
            "Exit 0: p <= --alpha (a copy); 1: not shown; 2: bad arguments or no answer."
        ),
    )
    parser.add_argument(
        "evidence", nargs="+", type=Path, help="evidence files (.jsonl) or folders of them"
    )
    suspect = parser.add_mutually_exclusive_group(required=True)
    suspect.add_argument(
        "--url", help="endpoint of the suspect, e.g. http://host:3000/predict (JSON API)"
    )
    suspect.add_argument(
        "--function",
        metavar="MODULE:FUNCTION",
        help="a Python callable: rows (n, ...) -> scores (n, classes) or labels (n,)",
    )
    parser.add_argument(
        "--key",
        default=None,
        help=f"API key for --url, sent as a Bearer token (default: ${KEY_ENV})",
    )
    parser.add_argument("--field", default="x", help="JSON field of the rows (default: x)")
    parser.add_argument(
        "--scores-field", default=None, help="field of a JSON object answer holding the scores"
    )
    parser.add_argument(
        "--path", type=Path, default=None, help="folder put first on sys.path for --function"
    )
    parser.add_argument("--principal", default=None, help="only inputs kept from this principal")
    parser.add_argument(
        "--max-queries",
        type=int,
        default=DEFAULT_MAX_QUERIES,
        help=f"kept inputs sent at most (default: {DEFAULT_MAX_QUERIES})",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help=f"p-value at or below which the suspect is a copy (default: {DEFAULT_ALPHA:g})",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request to --url (default: 30)"
    )
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.max_queries < 1:
        raise CliError("--max-queries must be at least 1")
    if not 0 < args.alpha < 1:
        raise CliError("--alpha must be between 0 and 1")
    files = list(_files(args.evidence))
    with httpx.Client(timeout=args.timeout) as http:
        predict = _suspect(args, http)
        try:
            verdict = verify_copy(
                _kept(files, args.principal),
                predict,
                max_queries=args.max_queries,
                alpha=args.alpha,
            )
        except SuspectError as exc:
            raise CliError(f"the suspect did not answer: {exc}") from None
        except (OSError, ValueError) as exc:
            raise CliError(str(exc)) from None
    if verdict.tested == 0:
        raise CliError("the evidence holds no kept inputs" + _for(args.principal))
    if args.json:
        print(json.dumps(verdict.as_dict(), indent=2))
    else:
        _print(verdict)
    return EXIT_OK if verdict.is_copy else EXIT_PROBLEMS


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(path.glob("*.jsonl"))
        elif path.is_file():
            yield path
        else:
            raise CliError(f"{path}: no such file or folder")


def _kept(files: list[Path], principal: str | None) -> Iterator[Evidence]:
    for record in read_evidence(files):
        if principal is None or record.principal == principal:
            yield record


def _suspect(args: argparse.Namespace, http: httpx.Client) -> Predictor:
    try:
        if args.url:
            key = args.key or os.environ.get(KEY_ENV)
            return url_predictor(
                args.url, field=args.field, key=key, scores_field=args.scores_field, client=http
            )
        if args.path is not None:
            sys.path.insert(0, str(args.path.resolve()))
        return function_predictor(args.function)
    except SuspectError as exc:
        raise CliError(str(exc)) from None


def _for(principal: str | None) -> str:
    return f" from principal {principal!r}" if principal else ""


def _print(verdict: Verdict) -> None:
    print(
        f"watermark matches: {verdict.matches} of {verdict.tested} kept inputs "
        f"({verdict.matches / verdict.tested:.1%}); the suspect kept our top-1 on "
        f"{verdict.top_matches}"
    )
    print(
        f"p-value: {verdict.p_value:.3g} (chance match <= 1/{verdict.classes - 1} per input; "
        f"alpha {verdict.alpha:g})"
    )
    for principal, count in sorted(verdict.principals.items(), key=lambda kv: -kv[1]):
        print(f"  matched inputs kept from {principal}: {count}")
    if verdict.is_copy:
        print("verdict: a copy - it learned the watermark of our answers")
    else:
        print("verdict: not shown to be a copy")
