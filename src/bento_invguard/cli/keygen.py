"""``invguard keygen``: a new API key, its digest appended to a key file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import PolicyError
from ..policy import Policy
from .errors import EXIT_OK, CliError
from .keyfile import new_admin_key, new_key, read_admin_keys, read_key_file, write_key_file

DEFAULT_KEY_FILE = Path("keys.yaml")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "keygen",
        help="generate an API key and add its digest to a key file",
        description=(
            "Generate a random API key for one principal, append its SHA-256 digest to "
            "the key file (created if missing) and print the key once on stdout. "
            "--admin makes a key for /invguard/admin/blocks instead (list and clear "
            "monitor blocks; it calls no model API), kept under admin_keys in the key file."
        ),
    )
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--tier", help="tier of the new key")
    kind.add_argument(
        "--admin", action="store_true", help="an admin key, for /invguard/admin/blocks only"
    )
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
    keys_file: Path = args.keys_file or _policy_key_file(policy) or DEFAULT_KEY_FILE
    if args.admin:
        return _add_admin_key(args, policy, keys_file)
    if policy is not None and args.tier not in policy.tiers:
        raise CliError(
            f"--tier: no tier named {args.tier!r} in {args.policy} "
            f"(tiers: {', '.join(policy.tiers)})"
        )
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


def _add_admin_key(args: argparse.Namespace, policy: Policy | None, keys_file: Path) -> int:
    admin = read_admin_keys(keys_file)
    known = {k.id for k in admin} | ({k.id for k in policy.admin_keys} if policy else set())
    if args.key_id in known:
        raise CliError(f"--id: an admin key with id {args.key_id!r} already exists")
    key, entry = new_admin_key(args.key_id)
    write_key_file(keys_file, read_key_file(keys_file), [*admin, entry])
    print(key)
    print(
        f"invguard keygen: added admin key {entry.id!r} to {keys_file} (admin_keys: it may "
        "list and clear blocks at /invguard/admin/blocks); the key above is shown once, "
        "store it now",
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
