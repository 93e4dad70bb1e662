"""Turning what a user passes to guard()/protect() into a loaded Policy."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import GuardConfigError
from ..policy import Policy

POLICY_ENV = "INVGUARD_POLICY"
logger = logging.getLogger("bento_invguard")


def resolve_policy(
    policy: Policy | str | os.PathLike[str] | None,
    caller_file: str | None,
    *,
    policy_from: Any = None,
) -> Policy:
    """A Policy as is; a path relative to the calling module (else the working dir).

    ``policy_from`` (a model tag, ``bentoml.models.BentoModel`` or bentoml
    Model) loads the policy attached to that model instead, digests checked.
    """
    try:
        if policy_from is not None:
            if policy is not None:
                raise GuardConfigError("pass either a policy or policy_from=<model>, not both")
            from ..artifacts import load_attached_policy

            return load_attached_policy(policy_from)
        return _policy_from_argument(policy, caller_file)
    except GuardConfigError as exc:
        # `bentoml serve <bento tag>` replaces a ValueError raised while importing the
        # service with "No module named ..." (bentoml's loader.load): log the reason too.
        logger.error("bento_invguard: %s", exc)
        raise


def _policy_from_argument(
    policy: Policy | str | os.PathLike[str] | None, caller_file: str | None
) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if policy is None:
        policy = os.environ.get(POLICY_ENV)
        if not policy:
            raise GuardConfigError(
                f"no policy: pass a Policy or a path, set {POLICY_ENV} to a policy file, "
                "or load the policy attached to a model with policy_from=<model>"
            )
    path = Path(policy)
    if not path.is_absolute() and caller_file is not None:
        beside_caller = Path(caller_file).resolve().parent / path
        if beside_caller.exists():
            path = beside_caller
    return Policy.from_file(path)
