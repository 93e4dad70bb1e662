"""``invguard init [DIR]``: a commented starter policy and one key per tier."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..admin.endpoints import load_admin_keys
from ..policy import Policy, load_keys
from .errors import EXIT_OK, CliError
from .keyfile import ADMIN, new_admin_key, new_key, write_key_file

POLICY_NAME = "invguard.yaml"
KEYS_NAME = "keys.yaml"
TIERS = ("public", "partner", "trusted")

STARTER_POLICY = """\
# bento_invguard policy: the defenses of one BentoML service against model
# inversion and extraction (OWASP ML03). Serve it with
#   @protect("invguard.yaml") above @bentoml.service
# then check it with `invguard check invguard.yaml` and review it with
# `invguard audit service:YourService`.
version: 1

# API keys are stored as SHA-256 digests only, in keys.yaml. Add a key with
#   invguard keygen --tier public --id <name> --policy invguard.yaml
# At serve time INVGUARD_KEYS may add more: a JSON list of {id, sha256, tier}.
# Its admin_keys section (invguard keygen --admin) may list and clear monitor
# blocks at /invguard/admin/blocks, and call no model API.
keys_from:
  file: keys.yaml
  env: INVGUARD_KEYS
  required: true

anonymous_tier: null          # no key, no answer

# A tier decides which APIs (shell globs) its callers may call, how many
# queries they may make (per principal; long windows are query budgets) and
# how much of the scores they see: label (one-hot at the predicted class),
# top_k, rounded or full.
tiers:
  public:
    output: label
    endpoints: ["*"]
    rate_limit: "5/second;300/minute;2000/day"
  partner:
    output: top_k             # the k best classes, rounded
    k: 3
    decimals: 2
    endpoints: ["*"]
    rate_limit: "10/second;600/minute;10000/day"
  trusted:
    output: full              # raw scores: only for callers you trust
    endpoints: ["*"]
    rate_limit: "20/second;1000/minute;50000/day"

# Checks on the model input before the model sees it. Fill in the row shape
# and value range of your model, and fit a reference profile on the training
# data so that synthetic probes are refused:
#   invguard profile fit train.npy -o profile.json
input:
  # shape: [64]               # per row; the batch dimension is implied
  dtype: float
  finite: true
  # min: 0.0
  # max: 1.0
  max_rows: 256
  max_body_bytes: 1048576
  # profile: profile.json
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "init",
        help="write a starter policy and a key file with one key per tier",
        description=(
            f"Write a commented starter policy ({POLICY_NAME}, tiers "
            f"{', '.join(TIERS)}) and {KEYS_NAME} with one new key per tier and an admin "
            "key (for /invguard/admin/blocks), stored as digests. Each raw key is printed "
            "once: store it now."
        ),
    )
    parser.add_argument(
        "dir", nargs="?", default=".", type=Path, help="folder to write into (default: .)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    policy_path, keys_path = folder / POLICY_NAME, folder / KEYS_NAME
    existing = [str(p) for p in (policy_path, keys_path) if p.exists()]
    if existing and not args.force:
        raise CliError(f"{' and '.join(existing)} already exist; pass --force to overwrite")
    if folder.exists() and not folder.is_dir():
        raise CliError(f"{folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)

    keys = {tier: new_key(f"{tier}-1", tier) for tier in TIERS}
    admin_key, admin_entry = new_admin_key("admin-1")
    policy_path.write_text(STARTER_POLICY, encoding="utf-8")
    write_key_file(
        keys_path,
        (entry for _, entry in keys.values()),
        [admin_entry],
    )
    policy = Policy.from_file(policy_path)
    load_keys(policy, environ={})  # what we wrote must load
    load_admin_keys(policy, environ={})

    print(f"wrote {policy_path} and {keys_path} (key digests only)")
    print("API keys, shown once; store them now, they cannot be recovered:")
    for tier, (key, entry) in keys.items():
        print(f"  {tier:<8} {entry.id:<10} {key}")
    print(f"  {ADMIN:<8} {admin_entry.id:<10} {admin_key}  (/invguard/admin/blocks only)")
    print(f"next: invguard check {policy_path}")
    return EXIT_OK
