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
from datetime import datetime, timezone
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
    parser.add_argument(
        "--since",
        help="only records at or after this ISO time, e.g. 2025-01-31T12:00Z (no offset: UTC)",
    )
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
    """The flagged records of ``files``; lines that are not JSON records are skipped, noted."""
    for path in files:
        try:
            with path.open(encoding="utf-8", errors="replace") as lines:
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        _skipped(path, number, "not JSON")
                        continue
                    if not isinstance(record, dict):
                        _skipped(path, number, "not a JSON object")
                    elif not isinstance(record.get("risk") or {}, dict):
                        _skipped(path, number, '"risk" is not an object')
                    elif _is_flagged(record):
                        yield record
        except OSError as exc:
            raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _skipped(path: Path, number: int, why: str) -> None:
    print(f"invguard flagged: {path}:{number}: {why}, skipped", file=sys.stderr)


def _is_flagged(record: dict[str, Any]) -> bool:
    risk = record.get("risk") or {}
    return bool(risk.get("flagged") or risk.get("degraded") or record.get("reason") == "blocked")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; a trailing ``Z`` is UTC, and so is a time without an offset.

    Raises ``ValueError`` for anything else.
    """
    value = text.strip()
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _since(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise CliError(
            f"--since {text!r}: expected an ISO time such as 2025-01-31 or "
            "2025-01-31T12:00:00+02:00"
        ) from None


def _at_or_after(record: dict[str, Any], since: datetime) -> bool:
    time = record.get("time")
    try:
        return isinstance(time, str) and parse_time(time) >= since
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    since = _since(args.since) if args.since is not None else None
    records = [
        r
        for r in flagged_records(audit_files(args.paths))
        if (args.principal is None or r.get("principal") == args.principal)
        and (since is None or _at_or_after(r, since))
    ]
    records.sort(key=lambda r: str(r.get("time", "")))
    try:
        out: TextIO = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
        try:
            for record in records:
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
        finally:
            if args.output:
                out.close()
    except OSError as exc:
        raise CliError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"{len(records)} flagged queries", file=sys.stderr)
    return EXIT_OK if records else EXIT_PROBLEMS
