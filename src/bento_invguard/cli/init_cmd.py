"""``invguard init [DIR]``: a commented starter policy and one key per tier."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..admin.endpoints import load_admin_keys
from ..policy import Policy, load_keys
from ..reference import Profile
from .errors import EXIT_OK, CliError
from .keyfile import ADMIN, new_admin_key, new_key, write_key_file
from .profile_cmd import expected_rates, load_rows

POLICY_NAME = "invguard.yaml"
PROFILE_NAME = "profile.json"
DEFAULT_RATE = 1e-4  # the policy's monitor.target_false_positive_rate by default
DEFAULT_VIEW = 100_000  # the policy's monitor.view.size by default
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
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="training rows (.npy or .csv): fit the reference profile (profile.json) on them "
        "and fill in the policy's input shape, range and profile",
    )
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

    policy_text, fitted = STARTER_POLICY, None
    if args.data is not None:
        policy_text, fitted = _with_profile(args.data, folder / PROFILE_NAME)
    keys = {tier: new_key(f"{tier}-1", tier) for tier in TIERS}
    admin_key, admin_entry = new_admin_key("admin-1")
    policy_path.write_text(policy_text, encoding="utf-8")
    write_key_file(
        keys_path,
        (entry for _, entry in keys.values()),
        [admin_entry],
    )
    policy = Policy.from_file(policy_path)
    load_keys(policy, environment=False)  # what we wrote must load
    load_admin_keys(policy, environment=False)

    print(f"wrote {policy_path} and {keys_path} (key digests only)")
    print("API keys, shown once; store them now, they cannot be recovered:")
    for tier, (key, entry) in keys.items():
        print(f"  {tier:<8} {entry.id:<10} {key}")
    print(f"  {ADMIN:<8} {admin_entry.id:<10} {admin_key}  (/invguard/admin/blocks only)")
    if fitted is not None:
        print(f"fitted {folder / PROFILE_NAME} on {fitted.n_samples} rows of {args.data}")
        for line in expected_rates(fitted, DEFAULT_RATE, DEFAULT_VIEW):
            print(line)
    print(f"next: invguard check {policy_path}")
    return EXIT_OK


def _with_profile(data_path: Path, profile_path: Path) -> tuple[str, Profile]:
    """The starter policy with its input section filled in from a profile fitted on the
    training rows, and the profile (saved to ``profile_path``)."""
    data = load_rows(data_path)
    try:
        profile = Profile.fit(data, target_false_positive_rate=DEFAULT_RATE / 2)
    except ValueError as exc:
        raise CliError(f"{data_path}: {exc}") from None
    profile_path.parent.mkdir(parents=True, exist_ok=True)
    profile.save(profile_path)
    low, high = float(np.min(data)), float(np.max(data))
    text = STARTER_POLICY
    for commented, filled in (
        (
            "  # shape: [64]               # per row; the batch dimension is implied",
            f"  shape: {list(profile.feature_shape)}   # per row; the batch dimension is implied",
        ),
        ("  # min: 0.0", f"  min: {low:g}"),
        ("  # max: 1.0", f"  max: {high:g}"),
        ("  # profile: profile.json", f"  profile: {PROFILE_NAME}"),
    ):
        text = text.replace(commented, filled)
    return text, profile
