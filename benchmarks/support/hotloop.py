"""The guard's pieces timed in a hot loop, in process (overhead.py's A1).

The guard exactly as ``@protect`` installs it (its middleware and the
``@guard`` wrapper) around a minimal ASGI app, driven directly on one asyncio
loop, guarded and unguarded calls alternating; also the middleware alone and
the wrapper alone. Caches stay warm in such a loop: this is the floor of the
cost.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np

from .example import TIERS, Traffic, core_controls
from .report import compare

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PAIRS = 4000  # per tier, guarded + unguarded calls each
PIECE_PAIRS = 4000  # middleware alone, wrapper alone
WARMUP = 500


def scope_for(path: str, body: bytes, headers: dict[str, str]) -> Scope:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http", "method": "POST", "path": path, "headers": raw}


def receiver(body: bytes) -> Receive:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class Sink:
    """An ASGI ``send`` that keeps only the status."""

    status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def api_app(method: Callable[..., Any], owner: Any) -> Callable[[Scope, Receive, Send], Any]:
    """A minimal ASGI app: JSON body -> ndarray -> API method -> JSON answer.

    The method is sync: like BentoML, the app runs it in a worker thread."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        x = np.asarray(json.loads(body)["x"], dtype=np.float64)
        out = await anyio.to_thread.run_sync(method, owner, x)
        payload = json.dumps(out.tolist()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    return app


async def body_only_app(scope: Scope, receive: Receive, send: Send) -> None:
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"[]", "more_body": False})


def _predict_with(model: Any) -> Callable[[Any, np.ndarray], np.ndarray]:
    def predict(self: Any, x: np.ndarray) -> np.ndarray:
        return model.predict_proba(x)  # type: ignore[no-any-return]

    return predict


def run_a1(
    app_dir: Path, model: Any, traffic: Traffic, pairs: int = PAIRS, piece_pairs: int = PIECE_PAIRS
) -> dict[str, Any]:
    """The guard exactly as @protect installs it, around a minimal ASGI app."""
    import bentoml

    from bento_invguard import Policy, local_caller, protect

    policy = Policy.from_file(app_dir / "invguard.yaml")
    predict = _predict_with(model)

    @protect(policy)
    @bentoml.service(name="bench_pieces")
    class Pieces:
        predict = bentoml.api(_predict_with(model))

    guarded_predict = Pieces.apis["predict"].func  # the @guard wrapper protect put on
    (middleware_cls, options), *rest = Pieces.middlewares
    if rest or middleware_cls.__name__ != "GuardMiddleware":
        raise SystemExit(f"A1: unexpected middlewares from @protect: {Pieces.middlewares}")

    core_policy = app_dir / "invguard_core.yaml"
    shutil.copy(app_dir / "invguard.yaml", core_policy)
    core_controls(core_policy)

    @protect(Policy.from_file(core_policy))
    @bentoml.service(name="bench_core")
    class Core:
        predict = bentoml.api(_predict_with(model))

    (_, core_options), *_ = Core.middlewares

    class Owner:
        pass

    owner = Owner()
    plain_app = api_app(predict, owner)
    guarded_app = middleware_cls(api_app(guarded_predict, owner), **options)
    mw_only = middleware_cls(body_only_app, **options)
    core_app = middleware_cls(api_app(Core.apis["predict"].func, owner), **core_options)
    clock = time.perf_counter_ns

    async def timed_pairs(
        guarded: Callable[[Scope, Receive, Send], Any],
        plain: Callable[[Scope, Receive, Send], Any],
        tier: str,
        pairs: int,
    ) -> dict[str, Any]:
        g_ns: list[int] = []
        p_ns: list[int] = []
        gc.collect()
        for i in range(WARMUP + pairs):
            key, body, _ = traffic.take(tier)
            headers = {"authorization": f"Bearer {key}"}
            order = ((guarded, g_ns), (plain, p_ns)) if i % 2 else ((plain, p_ns), (guarded, g_ns))
            for app, out in order:
                sink = Sink()
                scope, receive = scope_for("/predict", body, headers), receiver(body)
                t0 = clock()
                await app(scope, receive, sink)
                t1 = clock()
                if sink.status != 200:
                    raise SystemExit(f"A1: expected 200, got {sink.status}")
                if i >= WARMUP:
                    out.append(t1 - t0)
        return compare(g_ns, p_ns)

    async def all_async() -> dict[str, Any]:
        # One event loop for all: the rate limiter's storage belongs to the loop it met.
        # Every call runs under an unsampled server span, as BentoML's OpenTelemetry
        # middleware opens one for each request at its default tracing.sample_rate (0).
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

        server_span = NonRecordingSpan(
            SpanContext(0x5EED, 0x5EED, is_remote=False, trace_flags=TraceFlags(0))
        )
        otel_context.attach(trace.set_span_in_context(server_span))
        found: dict[str, Any] = {"end_to_end": {}}
        for tier in TIERS:
            found["end_to_end"][tier] = await timed_pairs(guarded_app, plain_app, tier, pairs)
        found["core_partner"] = await timed_pairs(core_app, plain_app, "partner", pairs)
        found["middleware_only"] = await timed_pairs(mw_only, body_only_app, "partner", piece_pairs)
        return found

    results = asyncio.run(all_async())

    g_ns: list[int] = []
    p_ns: list[int] = []
    gc.collect()
    with local_caller(tier="partner", principal="bench"):
        for i in range(WARMUP + piece_pairs):
            _, _, x = traffic.take("partner")
            order = (
                ((guarded_predict, g_ns), (predict, p_ns))
                if i % 2
                else ((predict, p_ns), (guarded_predict, g_ns))
            )
            for fn, out in order:
                t0 = clock()
                fn(owner, x)
                t1 = clock()
                if i >= WARMUP:
                    out.append(t1 - t0)
    results["wrapper_only_partner"] = compare(g_ns, p_ns)
    return results
