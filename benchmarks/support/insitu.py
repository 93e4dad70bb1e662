"""The guard timed inside BentoML apps in process (overhead.py's A2).

A ``@protect`` service and the same service without it, both built in this
process and driven alternately through Starlette's TestClient. Timers inside
each app record the guard's middleware layer and the API function as BentoML
calls it; a separate pass times the guard's steps in place.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .example import TIERS, Traffic
from .hotloop import Receive, Scope, Send
from .report import compare, summary_us
from .service import forget_bentoml_metrics

PAIRS = 800
WARMUP = 100
STEP_CALLS = 400  # per tier, guarded only: the step breakdown


class Probe:
    """Per-request timings inside one in-process BentoML app, recorded while ``active``."""

    def __init__(self) -> None:
        self.active = False
        self.outer: list[int] = []  # whole app, outside every middleware but the timer's
        self.inner: list[int] = []  # inside the user middlewares (GuardMiddleware, if any)
        self.func: list[int] = []  # the API function exactly as BentoML calls it

    def clear(self) -> None:
        self.outer.clear()
        self.inner.clear()
        self.func.clear()


class TimingMiddleware:
    """Pure ASGI middleware that times the rest of the stack for POST /predict."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any], probe: Probe, sink: str) -> None:
        self.app = app
        self.probe = probe
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter_ns()
        await self.app(scope, receive, send)
        if self.probe.active:
            getattr(self.probe, self.sink).append(time.perf_counter_ns() - t0)


def instrument(service: Any, probe: Probe) -> None:
    """Timers around the user middlewares (GuardMiddleware) and around the API function.

    BentoML stacks a service's own middlewares in the order they were added,
    outermost first, inside its metrics, tracing and access-log middlewares.
    """
    own = list(service.middlewares)
    service.middlewares[:] = [
        (TimingMiddleware, {"probe": probe, "sink": "outer"}),
        *own,
        (TimingMiddleware, {"probe": probe, "sink": "inner"}),
    ]
    method = service.apis["predict"]
    func = method.func
    clock = time.perf_counter_ns

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            return func(*args, **kwargs)
        finally:
            if probe.active:
                probe.func.append(clock() - t0)

    method.func = timed


@contextlib.contextmanager
def guard_parts(probe: Probe, parts: dict[str, list[int]]) -> Any:
    """Time the guard's main steps in place while ``probe.active``.

    Patches methods of the guard's classes for the duration (key lookup, rate
    limit, input checks, truncation, telemetry); a step that does not exist
    under that name is left out of the breakdown.
    """
    import importlib

    candidates = [
        ("bento_invguard.access", "AccessControl", "admit"),
        ("bento_invguard.ratelimit", "RateLimiter", "spend"),
        ("bento_invguard.integration", "GuardPipeline", "check_input"),
        ("bento_invguard.integration", "GuardPipeline", "harden"),
        ("bento_invguard.integration.recorder", "Recorder", "start"),
        ("bento_invguard.integration.recorder", "Recorder", "finish"),
    ]
    saved = []
    clock = time.perf_counter_ns
    for module_name, class_name, name in candidates:
        try:
            owner = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        original = owner.__dict__.get(name)
        if original is None:
            continue
        sink = parts.setdefault(f"{class_name}.{name}", [])
        if inspect.iscoroutinefunction(original):

            async def timed_async(
                *args: Any, _f: Any = original, _sink: list[int] = sink, **kwargs: Any
            ) -> Any:
                t0 = clock()
                try:
                    return await _f(*args, **kwargs)
                finally:
                    if probe.active:
                        _sink.append(clock() - t0)

            replacement: Any = timed_async
        else:

            def timed(
                *args: Any, _f: Any = original, _sink: list[int] = sink, **kwargs: Any
            ) -> Any:
                t0 = clock()
                try:
                    return _f(*args, **kwargs)
                finally:
                    if probe.active:
                        _sink.append(clock() - t0)

            replacement = timed
        saved.append((owner, name, original))
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def run_a2(app_dir: Path, model: Any, traffic: Traffic, pairs: int = PAIRS) -> dict[str, Any]:
    import bentoml

    with warnings.catch_warnings():  # starlette's notice about httpx in its TestClient
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from bento_invguard import Policy, protect

    policy = Policy.from_file(app_dir / "invguard.yaml")

    @bentoml.service(name="bench_plain")
    class Plain:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return model.predict_proba(x)  # type: ignore[no-any-return]

    @protect(policy)
    @bentoml.service(name="bench_guarded")
    class Guarded:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return model.predict_proba(x)  # type: ignore[no-any-return]

    services = {"unguarded": Plain, "guarded": Guarded}
    probes = {name: Probe() for name in services}
    for name, svc in services.items():
        instrument(svc, probes[name])

    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        clients = {}
        for name, svc in services.items():
            client = stack.enter_context(TestClient(svc.to_asgi(), raise_server_exceptions=True))
            key, body, _ = traffic.take("trusted")
            response = client.post(  # the first request registers BentoML's metrics
                "/predict", content=body, headers={"authorization": f"Bearer {key}"}
            )
            if response.status_code != 200:
                raise SystemExit(f"A2 {name}: {response.status_code} {response.text}")
            forget_bentoml_metrics()
            clients[name] = client
        clock = time.perf_counter_ns
        for tier in TIERS:
            wall_ns: dict[str, list[int]] = {"guarded": [], "unguarded": []}
            for probe in probes.values():
                probe.clear()
            gc.collect()
            for i in range(WARMUP + pairs):
                measuring = i >= WARMUP
                key, body, _ = traffic.take(tier)
                headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
                names = ("guarded", "unguarded") if i % 2 else ("unguarded", "guarded")
                for name in names:
                    probes[name].active = measuring
                    t0 = clock()
                    response = clients[name].post("/predict", content=body, headers=headers)
                    t1 = clock()
                    probes[name].active = False
                    if response.status_code != 200:
                        raise SystemExit(f"A2 {name}: {response.status_code} {response.text}")
                    if measuring:
                        wall_ns[name].append(t1 - t0)
            g, u = probes["guarded"], probes["unguarded"]
            results[tier] = {
                "testclient_request": compare(wall_ns["guarded"], wall_ns["unguarded"]),
                "app": compare(g.outer, u.outer),
                "middleware_layer": compare(
                    [o - n for o, n in zip(g.outer, g.inner, strict=True)],
                    [o - n for o, n in zip(u.outer, u.inner, strict=True)],
                ),
                "api_function": compare(g.func, u.func),
            }
            # A separate, shorter pass: where the guarded call's time goes. Kept
            # apart so that the step timers' own cost stays out of the figures above.
            parts: dict[str, list[int]] = {}
            steps_probe = Probe()
            with guard_parts(steps_probe, parts):
                for i in range(WARMUP + STEP_CALLS):
                    steps_probe.active = i >= WARMUP
                    key, body, _ = traffic.take(tier)
                    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
                    response = clients["guarded"].post("/predict", content=body, headers=headers)
                    if response.status_code != 200:
                        raise SystemExit(f"A2 steps: {response.status_code} {response.text}")
            results[tier]["guard_steps"] = {name: summary_us(v) for name, v in parts.items() if v}
    return results
