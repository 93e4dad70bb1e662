"""Turning what a user passes to guard()/protect() into a loaded Policy."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import GuardConfigError
from ..policy import Policy

POLICY_ENV = "INVGUARD_POLICY"


def resolve_policy(
    policy: Policy | str | os.PathLike[str] | None, caller_file: str | None
) -> Policy:
    """A Policy as is; a path relative to the calling module (else the working dir)."""
    if isinstance(policy, Policy):
        return policy
    if policy is None:
        policy = os.environ.get(POLICY_ENV)
        if not policy:
            raise GuardConfigError(
                f"no policy: pass a Policy or a path, or set {POLICY_ENV} to a policy file"
            )
    path = Path(policy)
    if not path.is_absolute() and caller_file is not None:
        beside_caller = Path(caller_file).resolve().parent / path
        if beside_caller.exists():
            path = beside_caller
    return Policy.from_file(path)
