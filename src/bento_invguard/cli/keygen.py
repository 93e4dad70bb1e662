"""``invguard keygen``: a new API key, its digest appended to a key file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import PolicyError
from ..policy import Policy
from .errors import EXIT_OK, CliError
from .keyfile import new_key, read_key_file, write_key_file

DEFAULT_KEY_FILE = Path("keys.yaml")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "keygen",
        help="generate an API key and add its digest to a key file",
        description=(
            "Generate a random API key for one principal, append its SHA-256 digest to "
            "the key file (created if missing) and print the key once on stdout."
        ),
    )
    parser.add_argument("--tier", required=True, help="tier of the new key")
    parser.add_argument("--id", required=True, dest="key_id", help="principal id, unique")
    parser.add_argument(
        "--keys-file",
        type=Path,
        help="key file to add to (default: the policy's keys_from.file, else keys.yaml)",
    )
    parser.add_argument(
        "--policy", type=Path, help="policy file: the tier must exist in it, ids stay unique"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    policy = _load_policy(args.policy) if args.policy is not None else None
    if policy is not None and args.tier not in policy.tiers:
        raise CliError(
            f"--tier: no tier named {args.tier!r} in {args.policy} "
            f"(tiers: {', '.join(policy.tiers)})"
        )
    keys_file: Path = args.keys_file or _policy_key_file(policy) or DEFAULT_KEY_FILE
    entries = read_key_file(keys_file)
    if args.key_id in {e.id for e in entries}:
        raise CliError(f"--id: a key with id {args.key_id!r} already exists in {keys_file}")
    if policy is not None and args.key_id in {k.id for k in policy.keys}:
        raise CliError(f"--id: a key with id {args.key_id!r} is already in {args.policy}")
    key, entry = new_key(args.key_id, args.tier)
    write_key_file(keys_file, [*entries, entry])
    print(key)
    print(
        f"invguard keygen: added key {entry.id!r} (tier {entry.tier}) to {keys_file}; "
        "the key above is shown once, store it now",
        file=sys.stderr,
    )
    return EXIT_OK


def _load_policy(path: Path) -> Policy:
    try:
        return Policy.from_file(path)
    except PolicyError as exc:
        raise CliError(f"--policy: {exc}") from None


def _policy_key_file(policy: Policy | None) -> Path | None:
    if policy is None or policy.keys_from.file is None:
        return None
    return policy.resolve(policy.keys_from.file)
