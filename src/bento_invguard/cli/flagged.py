"""``invguard flagged``: export the queries the monitor flagged, for review before retraining.

Reads JSON-lines audit files (rotated ones included: ``audit.0.jsonl.1`` ...)
and writes the records of flagged, degraded or blocked queries as JSON lines,
oldest first. With ``capture: full`` in the policy they carry the raw inputs;
otherwise their digests and summary statistics, enough to find the rows in
your own request logs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .errors import EXIT_OK, EXIT_PROBLEMS, CliError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "flagged",
        help="export flagged, degraded and blocked queries from the audit trail",
        description=(
            "Read JSON-lines audit files (or folders of them) and write the records of "
            "queries the monitor flagged, degraded or blocked, oldest first. Exit 1 when "
            "there are none."
        ),
    )
    parser.add_argument("paths", nargs="+", type=Path, help="audit .jsonl files or folders")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    parser.add_argument("--principal", help="only this principal")
    parser.add_argument("--since", help="only records at or after this ISO time")
    parser.set_defaults(handler=run)


def audit_files(paths: list[Path]) -> list[Path]:
    """The audit files named or found in the folders named (rotated copies included)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.jsonl*") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise CliError(f"{path}: no such file or folder")
    return found


def flagged_records(files: list[Path]) -> Iterator[dict[str, Any]]:
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    print(f"invguard flagged: {path}:{number}: not JSON, skipped", file=sys.stderr)
                    continue
                if isinstance(record, dict) and _is_flagged(record):
                    yield record


def _is_flagged(record: dict[str, Any]) -> bool:
    risk = record.get("risk") or {}
    return bool(risk.get("flagged") or risk.get("degraded") or record.get("reason") == "blocked")


def run(args: argparse.Namespace) -> int:
    records = [
        r
        for r in flagged_records(audit_files(args.paths))
        if (args.principal is None or r.get("principal") == args.principal)
        and (args.since is None or str(r.get("time", "")) >= args.since)
    ]
    records.sort(key=lambda r: str(r.get("time", "")))
    out: TextIO = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    finally:
        if args.output:
            out.close()
    print(f"{len(records)} flagged queries", file=sys.stderr)
    return EXIT_OK if records else EXIT_PROBLEMS
