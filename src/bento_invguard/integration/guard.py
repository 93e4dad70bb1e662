"""@guard: the in-call controls around one BentoML API method."""

from __future__ import annotations

import copy
import functools
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from ..context import QueryContext
from ..errors import GuardConfigError, GuardRejection, InvalidInput
from ..hardening import OutputHardener
from ..hardening.contract import check_output_annotation
from ..policy import Policy
from ..telemetry import ExplainHook, TelemetryOptions
from .arguments import InputLocator
from .call_end import refuse
from .pipeline import GuardPipeline
from .policy_source import resolve_policy
from .quiet_logs import quiet_client_errors
from .unsupported import misconfigured, refuse_unsupported

F = TypeVar("F", bound=Callable[..., Any])
GUARD_ATTR = "__invguard_pipeline__"


def guard(
    policy: Policy | str | os.PathLike[str] | None = None,
    *,
    input_arg: str | None = None,
    scores_field: str | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    explain: ExplainHook | None = None,
) -> Callable[[F], F]:
    """Guard one API method; place it under ``@bentoml.api``.

    Validates the input before the model and truncates the scores after it,
    for the caller's tier. The method keeps its kind (sync, async, generator)
    and its signature, so BentoML's schema does not change.

    >>> import bentoml, numpy as np
    >>> @bentoml.service                                   # doctest: +SKIP
    ... class Svc:
    ...     @bentoml.api
    ...     @guard("invguard.yaml", input_arg="x")
    ...     def predict(self, x: np.ndarray) -> np.ndarray: ...
    """
    caller = sys._getframe(1).f_globals.get("__file__")
    pipeline_policy = resolve_policy(policy, caller)
    telemetry = TelemetryOptions(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        explain=explain,
        under_bentoml=True,
    )
    pipeline = GuardPipeline(pipeline_policy, scores_field=scores_field, telemetry=telemetry)
    quiet_client_errors()
    return _guard_with(pipeline, input_arg)


#: The scores field of the pipeline's own hardener (the policy's or protect()'s).
SHARED_FIELD: Any = object()


def is_guarded(func: Callable[..., Any]) -> bool:
    return getattr(func, GUARD_ATTR, None) is not None


def _guard_with(
    pipeline: GuardPipeline,
    input_arg: str | None,
    *,
    api: str | None = None,
    scores_field: str | None = SHARED_FIELD,
) -> Callable[[F], F]:
    """Wrap one API method; its output contract is checked here where the return
    annotation tells. ``api``: the API's name (default: the method's)."""

    def decorate(func: F) -> F:
        if not callable(func) or type(func).__name__ == "APIMethod":
            raise GuardConfigError(
                "@guard must be placed under @bentoml.api (it wraps the plain method)"
            )
        name = api or func.__name__
        field = pipeline.hardener.scores_field if scores_field is SHARED_FIELD else scores_field
        check_output_annotation(func, name, field)
        locate = InputLocator(func, input_arg or pipeline.policy.input.argument, api=name)
        # The API's own view of the pipeline: the same controls and state, its own output.
        own = copy.copy(pipeline)
        own.hardener = OutputHardener(field, api=name, marker=pipeline.hardener.marker)
        wrapper = _wrap(func, own, locate, func.__name__)
        setattr(wrapper, GUARD_ATTR, pipeline)
        # BentoML 1.4 takes inspect.signature() of the API function on every call;
        # a stored signature (the function's own) saves it rebuilding one each time.
        wrapper.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _wrap(
    func: Callable[..., Any], pipeline: GuardPipeline, locate: InputLocator, endpoint: str
) -> Callable[..., Any]:
    check_arguments = _argument_checker(func)
    checked_classes: set[type] = set()

    def refuse_batchable(args: tuple[Any, ...]) -> None:
        # @guard sits under @bentoml.api, so it cannot see batchable=True (or a task)
        # when it is applied; @protect refuses those at startup, @guard at the first call.
        owner = type(args[0]) if args else type(None)
        if owner not in checked_classes:
            method = inspect.getattr_static(owner, endpoint, None)
            if hasattr(method, "batchable") and hasattr(method, "is_task"):  # an APIMethod
                refuse_unsupported(endpoint, method)
            checked_classes.add(owner)

    # In order: admit (authenticate if no middleware did, spend the rows sent), check them.
    def admit_sync(ctx: QueryContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        check_arguments(ctx, kwargs)
        value = locate(args, kwargs)
        pipeline.admit_from_thread(ctx, value)
        pipeline.check_input(ctx, value)

    async def admit_async(ctx: QueryContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        check_arguments(ctx, kwargs)
        value = locate(args, kwargs)
        await pipeline.admit(ctx, value)
        pipeline.check_input(ctx, value)

    def harden_item(ctx: QueryContext, item: Any) -> Any:
        try:
            return pipeline.harden_item(ctx, item)
        except GuardConfigError as exc:  # the middleware answers with the rejection
            raise misconfigured(ctx, endpoint, exc) from None

    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            refuse_batchable(args)
            with pipeline.closing(pipeline.open(endpoint)) as ctx:
                await admit_async(ctx, args, kwargs)  # a rejection raises; the middleware answers
                await pipeline.judge(ctx, stream=True)
                async for item in func(*args, **kwargs):
                    yield harden_item(ctx, item)

        return agen_wrapper

    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            refuse_batchable(args)
            with pipeline.closing(pipeline.open(endpoint)) as ctx:
                admit_sync(ctx, args, kwargs)
                pipeline.judge_from_thread(ctx, stream=True)
                for item in func(*args, **kwargs):
                    yield harden_item(ctx, item)

        return gen_wrapper

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            refuse_batchable(args)
            try:
                ctx = pipeline.open(endpoint)
            except GuardRejection as rejection:
                return refuse(None, rejection)
            with pipeline.closing(ctx):
                try:
                    await admit_async(ctx, args, kwargs)
                    judgement = await pipeline.judge(ctx)
                    output = await func(*args, **kwargs)
                    return await pipeline.harden_async(ctx, output, judgement)
                except GuardRejection as rejection:
                    return refuse(ctx, rejection)
                except GuardConfigError as exc:
                    return refuse(ctx, misconfigured(ctx, endpoint, exc))

        return async_wrapper

    @functools.wraps(func)
    def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
        refuse_batchable(args)
        try:
            ctx = pipeline.open(endpoint)
        except GuardRejection as rejection:
            return refuse(None, rejection)
        with pipeline.closing(ctx):
            try:
                admit_sync(ctx, args, kwargs)
                judgement = pipeline.judge_from_thread(ctx)
                return pipeline.harden(ctx, func(*args, **kwargs), judgement)
            except GuardRejection as rejection:
                return refuse(ctx, rejection)
            except GuardConfigError as exc:
                return refuse(ctx, misconfigured(ctx, endpoint, exc))

    return sync_wrapper


def _argument_checker(func: Callable[..., Any]) -> Callable[[QueryContext, dict[str, Any]], None]:
    """Refuses what a ``**kwargs`` API would let a body smuggle into the call.

    BentoML merges a body's ``kwargs`` object into the call's keyword arguments
    after it has set the request context, so ``{"kwargs": {"ctx": ...}}`` would
    replace the API's ``ctx`` and ``{"kwargs": {"self": ...}}`` would collide
    with ``self``: both fail inside the model code (a 500). Refused as 422.
    """
    params = inspect.signature(func).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return lambda ctx, kwargs: None
    context_names = [
        name
        for name in ("ctx", "context")
        if name in params
        and (
            params[name].annotation is inspect.Parameter.empty
            or "Context" in str(params[name].annotation)
        )
    ][:1]  # BentoML passes its context as the first of these

    def check(ctx: QueryContext, kwargs: dict[str, Any]) -> None:
        if "self" in kwargs:
            raise ctx.reject(InvalidInput("schema", "'self' is not an argument"), "validate")
        for name in context_names:
            if name in kwargs and not _is_bentoml_context(kwargs[name]):
                raise ctx.reject(
                    InvalidInput("schema", f"{name!r} is reserved for BentoML's request context"),
                    "validate",
                )

    return check


def _is_bentoml_context(value: Any) -> bool:
    from bentoml import Context

    return isinstance(value, Context)
