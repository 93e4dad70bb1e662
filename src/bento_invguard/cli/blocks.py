"""``invguard blocks list|clear``: the monitor's blocks in shared (Redis) storage."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

from ..monitor import Monitor
from ..policy import Policy
from ..storage import is_memory, redacted, storage_uri
from .errors import EXIT_OK, EXIT_PROBLEMS, CliError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "blocks",
        help="list or clear principals blocked by the query monitor",
        description=(
            "Reads the monitor's blocks from the policy's storage (redis://...). With "
            "storage memory:// blocks live inside the serving process: use the admin "
            "endpoint /invguard/admin/blocks with an admin key instead."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list current blocks")
    listing.add_argument("--policy", type=Path, required=True, help="policy file")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=run_list)
    clear = actions.add_parser("clear", help="clear one principal's block and history")
    clear.add_argument("principal", help="principal id, or MODEL_TAG:PRINCIPAL as listed")
    clear.add_argument("--policy", type=Path, required=True, help="policy file")
    clear.add_argument(
        "--model-tag", default=None, help="model tag the state belongs to (default: as listed)"
    )
    clear.set_defaults(handler=run_clear)


def _monitor(path: Path) -> Monitor:
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    policy = Policy.from_file(path)
    uri = storage_uri(policy)
    if is_memory(uri):
        raise CliError(
            f"{path}: storage is {redacted(uri)}: blocks live inside the serving process; "
            "call GET/DELETE /invguard/admin/blocks with an admin key instead"
        )
    return Monitor(policy)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except (OSError, ConnectionError, TimeoutError) as exc:
        raise CliError(f"cannot reach the storage: {exc}", EXIT_PROBLEMS) from None
    except Exception as exc:
        if type(exc).__module__.startswith("redis"):
            raise CliError(f"cannot reach the storage: {exc}", EXIT_PROBLEMS) from None
        raise


async def _list(monitor: Monitor) -> list[dict[str, Any]]:
    try:
        return await monitor.blocks()
    finally:
        await monitor.aclose()


async def _clear(monitor: Monitor, key: str) -> bool:
    try:
        return await monitor.unblock(key)
    finally:
        await monitor.aclose()


def run_list(args: argparse.Namespace) -> int:
    blocks = _run(_list(_monitor(args.policy)))
    if args.json:
        print(json.dumps(blocks, indent=1))
        return EXIT_OK
    if not blocks:
        print("no principal is blocked")
    for b in sorted(blocks, key=lambda b: b["until"]):
        until = dt.datetime.fromtimestamp(b["until"], dt.timezone.utc).isoformat(timespec="seconds")
        print(f"{b['principal']}  until {until}  ({b['reason']})")
    return EXIT_OK


def run_clear(args: argparse.Namespace) -> int:
    monitor = _monitor(args.policy)
    principal: str = args.principal
    if args.model_tag:
        key = f"{args.model_tag}:{principal}"
    elif ":" in principal:
        key = principal
    else:
        blocks = _run(_list(_monitor(args.policy)))
        matches = [b["principal"] for b in blocks if b["principal"].rsplit(":", 1)[-1] == principal]
        if not matches:
            print(f"{principal} is not blocked")
            return EXIT_PROBLEMS
        key = matches[0]
    cleared = _run(_clear(monitor, key))
    print(f"cleared {key}" if cleared else f"{key} was not blocked")
    return EXIT_OK if cleared else EXIT_PROBLEMS
