"""What ``invguard audit`` looks at: each API of a service or bento, or a policy file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GuardConfigError
from ..policy import Policy
from ..reference import Profile
from .errors import CliError

POLICY_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class AuditedApi:
    """One API and the guard around it (``policy`` is None when it has none)."""

    name: str
    route: str
    policy: Policy | None
    profile: Profile | None
    middleware: bool  # GuardMiddleware authenticates before the body is read
    guarded_by: str  # "protect", "guard", "skip" (left unguarded by protect), "none", "policy file"
    #: "scores", "unknown" (checked at the first call) or what breaks the output contract.
    output_contract: str = "unknown"


@dataclass(frozen=True)
class AuditTarget:
    kind: str  # "service" or "policy"
    name: str
    apis: tuple[AuditedApi, ...]
    dependencies: tuple[str, ...] = ()


def load_target(spec: str, working_dir: Path) -> AuditTarget:
    """A policy file (.yaml/.yml/.json) or a service: import string, bento tag or folder."""
    path = Path(spec) if Path(spec).is_absolute() else working_dir / spec
    if path.suffix.lower() in POLICY_SUFFIXES:
        if not path.is_file():
            raise CliError(f"{spec}: no such policy file")
        return _policy_target(path)
    return _service_target(spec, working_dir)


def _policy_target(path: Path) -> AuditTarget:
    try:
        policy = Policy.from_file(path)
        profile = None
        if policy.input.profile is not None:
            profile = Profile.load(policy.resolve(policy.input.profile))
    except GuardConfigError as exc:
        raise CliError(str(exc)) from None
    api = AuditedApi(
        name="*",
        route="every API",
        policy=policy,
        profile=profile,
        middleware=True,
        guarded_by="policy file",
    )
    return AuditTarget(kind="policy", name=str(path), apis=(api,))


def _service_target(spec: str, working_dir: Path) -> AuditTarget:
    service = _load_service(spec, working_dir)
    from ..integration.guard import GUARD_ATTR
    from ..integration.middleware import GuardMiddleware
    from ..integration.protect import api_routes

    routes = {name: path for path, name in api_routes(service).items()}
    behind_middleware: set[str] = set()
    protected = False
    for cls, options in service.middlewares:
        if cls is GuardMiddleware:
            protected = True
            behind_middleware.update(options.get("routes", {}).values())
    apis = []
    for name, method in service.apis.items():
        pipeline: Any = getattr(method.func, GUARD_ATTR, None)
        middleware = name in behind_middleware
        if pipeline is None:
            guarded_by = "skip" if protected else "none"
        else:
            guarded_by = "protect" if middleware else "guard"
        apis.append(
            AuditedApi(
                name=name,
                route=routes.get(name, method.route),
                policy=None if pipeline is None else pipeline.policy,
                profile=None if pipeline is None else pipeline.validator.profile,
                middleware=middleware,
                guarded_by=guarded_by,
                output_contract=_output_contract(name, method.func, pipeline),
            )
        )
    return AuditTarget(
        kind="service",
        name=str(service.name),
        apis=tuple(apis),
        dependencies=tuple(sorted(service.dependencies)),
    )


def _output_contract(name: str, func: Any, pipeline: Any) -> str:
    """What the API's return annotation says of the output contract (see AuditedApi)."""
    from ..hardening.contract import check_output_annotation

    field = None if pipeline is None else pipeline.hardener.scores_field
    try:
        return check_output_annotation(func, name, field)
    except GuardConfigError as exc:
        return str(exc)


def _load_service(spec: str, working_dir: Path) -> Any:
    """Import the service the way ``bentoml serve`` does (working dir on sys.path)."""
    import bentoml
    from bentoml import Service
    from bentoml.exceptions import BentoMLException

    if not working_dir.is_dir():
        raise CliError(f"--working-dir: {working_dir} is not a folder")
    try:
        service = bentoml.load(spec, working_dir=str(working_dir))
    except GuardConfigError as exc:
        raise CliError(f"{spec}: the guard refused to start: {exc}") from None
    except BentoMLException as exc:
        raise CliError(f"{spec}: cannot load the service: {exc}") from None
    except Exception as exc:  # the user's module failed to import
        raise CliError(f"{spec}: importing it raised {type(exc).__name__}: {exc}") from None
    if not isinstance(service, Service):
        raise CliError(f"{spec}: not a @bentoml.service (BentoML 1.2+ service API)")
    return service
