"""@protect: every API of a service guarded, plus the middleware, in one line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from ..errors import GuardConfigError
from ..policy import Policy
from ..telemetry import ExplainHook, TelemetryOptions
from .guard import GUARD_ATTR, SHARED_FIELD, _guard_with
from .middleware import GuardMiddleware
from .pipeline import GuardPipeline
from .policy_source import resolve_policy
from .quiet_logs import quiet_client_errors
from .unsupported import refuse_unsupported

S = TypeVar("S")
logger = logging.getLogger("bento_invguard")


def protect(
    policy: Policy | str | os.PathLike[str] | None = None,
    *,
    input_arg: str | None = None,
    scores_field: str | None = None,
    apis: Mapping[str, Mapping[str, Any]] | None = None,
    skip: Iterable[str] = (),
    open_paths: Iterable[str] = (),
    policy_from: Any = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    explain: ExplainHook | None = None,
) -> Callable[[S], S]:
    """Guard every API of a BentoML service; place it above ``@bentoml.service``.

    ``input_arg`` and ``scores_field`` apply to every API; ``apis`` sets them
    for one API (``apis={"predict_dict": {"scores_field": "scores"}}``; a
    ``None`` scores field there means the API returns the scores array
    itself). APIs already decorated with :func:`guard` keep their own options.
    Each API's output contract is checked at startup where its return
    annotation tells (an ndarray; a dict or pydantic model with its
    ``scores_field``), otherwise at the first call.

    ``skip`` names APIs left unguarded (an ``info()`` with no input, say): no
    validation, rate limit, monitor or truncation, but the middleware still
    requires a valid key of any tier to call them (fail closed) unless their
    path is in ``open_paths``, which lists paths open to everyone.

    The service also gets :class:`GuardMiddleware`, which authenticates, gates
    endpoints by tier, refuses pickle and caps the body before it is read,
    and at startup puts a header screen in front of BentoML's own middleware
    (400 ``invalid_header`` for header bytes that it would fail to decode; see
    :mod:`bento_invguard.integration.header_screen`).

    ``policy_from`` (a model tag, ``bentoml.models.BentoModel`` or bentoml
    Model) takes the policy stored in that model with
    :func:`bento_invguard.attach`, and refuses to start if its files no
    longer match their recorded SHA-256 digests.

    Every guarded query gets a span under BentoML's server span (from
    ``tracer_provider`` if given, else BentoML's own tracer provider), metrics
    (Prometheus on ``/metrics``; OpenTelemetry through ``meter_provider`` or
    the global one) and an audit record (``logger_provider`` serves
    ``audit.sink: otel_logs``). ``explain(x_row, scores_row) -> dict`` adds
    small explanations to the audit records of flagged callers.

    >>> @protect("invguard.yaml")                         # doctest: +SKIP
    ... @bentoml.service
    ... class FaceID: ...
    >>> @protect(policy_from="faceid_model:latest")       # doctest: +SKIP
    ... @bentoml.service
    ... class FaceID: ...
    """
    caller = sys._getframe(1).f_globals.get("__file__")
    resolved = resolve_policy(policy, caller, policy_from=policy_from)
    extra_open = tuple(open_paths)
    skipped = frozenset(skip)
    per_api = {name: _api_options(name, options) for name, options in (apis or {}).items()}

    def decorate(service: S) -> S:
        _require_service(service)
        quiet_client_errors()
        svc: Any = service
        telemetry = TelemetryOptions(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
            models=svc.models,
            explain=explain,
            under_bentoml=True,
        )
        pipeline = GuardPipeline(
            resolved,
            scores_field=scores_field,
            model_version=model_version_of(svc),
            telemetry=telemetry,
        )
        _check_api_names(svc, skipped, per_api)
        for name, method in svc.apis.items():
            if name in skipped:
                continue
            refuse_unsupported(name, method)
            if getattr(method.func, GUARD_ATTR, None) is None:
                options = per_api.get(name, {})
                method.func = _guard_with(
                    pipeline,
                    options.get("input_arg", input_arg),
                    api=name,
                    scores_field=options.get("scores_field", SHARED_FIELD),
                )(method.func)
        routes = {path: name for path, name in api_routes(svc).items() if name not in skipped}
        svc.add_asgi_middleware(
            GuardMiddleware,
            policy=resolved,
            routes=routes,
            open_paths=(*extra_open, *_service_open_paths(svc)),
            access=pipeline.access,
            limiter=pipeline.limiter,
            recorder=pipeline.recorder,
            monitor=pipeline.monitor,
            view=pipeline.view,
        )
        _warn_per_worker_state(svc, resolved)
        return service

    return decorate


API_OPTIONS = frozenset({"input_arg", "scores_field"})


def _api_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - API_OPTIONS)
    if unknown:
        raise GuardConfigError(
            f"protect(apis={{{name!r}: ...}}): unknown option {unknown[0]!r}; "
            f"the options of one API are {', '.join(sorted(API_OPTIONS))}"
        )
    return dict(options)


def _check_api_names(
    service: Any, skipped: frozenset[str], per_api: Mapping[str, Mapping[str, Any]]
) -> None:
    known = set(service.apis)
    for where, names in (("skip", skipped), ("apis", per_api)):
        for name in sorted(set(names) - known):
            raise GuardConfigError(
                f"protect({where}=...): the service has no API {name!r} "
                f"(its APIs: {', '.join(sorted(known)) or 'none'})"
            )
    for name in sorted(skipped & set(per_api)):
        raise GuardConfigError(f"protect(): API {name!r} is both in skip and in apis")
    for name in sorted(skipped | set(per_api)):
        if getattr(service.apis[name].func, GUARD_ATTR, None) is not None:
            raise GuardConfigError(
                f"protect(): API {name!r} has its own @guard; drop it from skip / apis, "
                "or drop its @guard"
            )


def _warn_per_worker_state(service: Any, policy: Policy) -> None:
    from ..storage import is_memory, storage_uri

    workers = service.config.get("workers", 1)
    if workers != 1 and is_memory(storage_uri(policy)):
        logger.warning(
            "bento_invguard: service %s runs %s workers with storage memory://: each worker "
            "counts rate limits and keeps monitor state on its own, so a caller gets up to "
            "%s times its limit. Set storage: redis://... in the policy to share them.",
            service.name,
            workers,
            workers,
        )


def model_version_of(service: Any) -> Callable[[], str]:
    """The tag of the service's first BentoML model, read from the local store on first use.

    Monitor state is kept per model version, so a retrained model starts a
    fresh baseline. Resolution waits for the first query (the model store may
    not be readable when the service module is imported) and never pulls a
    model over the network.
    """
    from ..telemetry.model_info import describe_models

    resolved: list[str] = []

    def version() -> str:
        if not resolved:
            info = describe_models(list(getattr(service, "models", []) or []))
            resolved.append(info.tag if info is not None else "default")
        return resolved[0]

    return version


def api_routes(service: Any) -> dict[str, str]:
    """Each API's full path (with the service's path prefix) -> API name."""
    return {_join(service.path_prefix, m.route): name for name, m in service.apis.items()}


def _service_open_paths(service: Any) -> list[str]:
    endpoints = service.config.get("endpoints", {}) or {}
    paths = [p for p in (endpoints.get("livez"), endpoints.get("readyz")) if p]
    if service.path_prefix:
        paths += [_join(service.path_prefix, p) for p in ("livez", "readyz", "docs.json", "")]
    return paths


def _join(prefix: str | None, route: str) -> str:
    parts = (p.strip("/") for p in (prefix or "", route))
    return "/" + "/".join(p for p in parts if p)


def _require_service(obj: Any) -> None:
    from bentoml import Service

    if not isinstance(obj, Service):
        raise GuardConfigError(
            "@protect must be placed above @bentoml.service "
            f"(it received {type(obj).__name__}, not a BentoML Service)"
        )
