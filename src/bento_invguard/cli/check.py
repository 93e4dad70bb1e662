"""``invguard check POLICY``: load a policy as the server would, and summarise it."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from ..errors import GuardConfigError
from ..policy import Policy, load_keys
from ..reference import Profile
from ..validation import InputValidator
from .describe import describe_output, input_checks, rate_limits_available, tier_rate_limit
from .errors import EXIT_OK, EXIT_PROBLEMS, CliError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "check",
        help="validate a policy, its keys and its profile",
        description=(
            "Load POLICY, its keys (inline, key file, environment variable) and its "
            "reference profile exactly as the server does at startup, and print a "
            "summary. Exits 1 with the failing field named if anything is wrong."
        ),
    )
    parser.add_argument("policy", type=Path, help="policy file (YAML or JSON)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path: Path = args.policy
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    try:
        policy = Policy.from_file(path)
        keys = load_keys(policy)
        profile = _profile(policy)
    except GuardConfigError as exc:
        raise CliError(str(exc), EXIT_PROBLEMS) from None

    per_tier = Counter(k.tier for k in keys)
    print(f"{path}: OK")
    print("tiers:")
    width = max(len(name) for name in policy.tiers)
    for name, tier in policy.tiers.items():
        line = (
            f"  {name:<{width}}  output {describe_output(tier)}; "
            f"endpoints {', '.join(tier.endpoints)}; keys {per_tier[name]}"
        )
        if rate_limits_available():
            line += f"; rate limit {tier_rate_limit(tier) or 'none'}"
        print(line)
    anonymous = policy.anonymous_tier
    print(f"anonymous callers: {f'tier {anonymous}' if anonymous else 'refused'}")
    print(f"keys: {len(keys)} ({_key_sources(policy)})")
    print("input checks: " + "; ".join(input_checks(policy.input, profile)))
    if not keys and anonymous is None:
        print("warning: no keys are configured, so every call will be refused with 401")
    return EXIT_OK


def _profile(policy: Policy) -> Profile | None:
    if policy.input.profile is None:
        return None
    profile = Profile.load(policy.resolve(policy.input.profile))
    InputValidator(policy.input, profile)  # the profile's shape must match input.shape
    return profile


def _key_sources(policy: Policy) -> str:
    sources = [f"inline {len(policy.keys)}"]
    if policy.keys_from.file is not None:
        path = policy.resolve(policy.keys_from.file)
        sources.append(f"file {path}" + ("" if path.exists() else " (missing)"))
    env = policy.keys_from.env
    if env:
        sources.append(f"env {env}" + ("" if os.environ.get(env) else " (not set)"))
    return "sources: " + ", ".join(sources)
