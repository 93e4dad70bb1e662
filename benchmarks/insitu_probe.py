"""Timers inside a served worker, for insitu.py (imported by the service it serves).

``install()`` wraps the guard's per-request steps (and BentoML's
``IOMixin.mime_type``, for scale) with accumulators of the calling thread's
CPU time, and adds a ``gc`` callback that sums collection time per
generation. ``SIGUSR1`` writes the totals as JSON to ``$INSITU_PROBE_OUT``.
A wrapped call costs two ``clock_gettime`` calls more (~1 us).
"""

from __future__ import annotations

import functools
import gc
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

#: name -> [calls, thread CPU ns, of which in gc ns]
STEPS: dict[str, list[int]] = {}
GC = {"collections": [0, 0, 0], "ns": [0, 0, 0]}
_gc_ns = [0]  # total gc time so far, read by the step timers
_gc_started = [0]

#: (module, class, method, step name): the guard's steps, as they run per request.
GUARD_STEPS = (
    ("bento_invguard.access.authenticate", "AccessControl", "admit", "access: key check"),
    ("bento_invguard.access.authenticate", "AccessControl", "gate", "access: tier gate"),
    ("bento_invguard.telemetry.recorder", "Recorder", "start", "telemetry: start (span)"),
    ("bento_invguard.telemetry.recorder", "Recorder", "finish", "telemetry: finish"),
    ("bento_invguard.telemetry.metrics", "GuardMetrics", "record_query", "  of which metrics"),
    ("bento_invguard.integration.pipeline", "GuardPipeline", "open", "wrapper: open query"),
    ("bento_invguard.integration.arguments", "InputLocator", "__call__", "wrapper: find input"),
    ("bento_invguard.validation.checks", "InputValidator", "__call__", "input checks"),
    ("bento_invguard.integration.pipeline", "GuardPipeline", "harden", "truncation"),
    ("bento_invguard.integration.pipeline", "GuardPipeline", "close", "wrapper: close query"),
)
BENTOML_STEPS = (("_bentoml_sdk.io_models", "IOMixin", "mime_type", "BentoML: output media type"),)


def _timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    record = STEPS.setdefault(name, [0, 0, 0])
    cpu = time.thread_time_ns

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        gc0 = _gc_ns[0]
        t0 = cpu()
        try:
            return func(*args, **kwargs)
        finally:
            record[1] += cpu() - t0
            record[2] += _gc_ns[0] - gc0
            record[0] += 1

    return timed


def _wrap(steps: tuple[tuple[str, str, str, str], ...]) -> None:
    import importlib

    for module_name, class_name, method, name in steps:
        owner = getattr(importlib.import_module(module_name), class_name)
        raw = owner.__dict__[method]
        if isinstance(raw, classmethod):
            setattr(owner, method, classmethod(_timed(name, raw.__func__)))
        else:
            setattr(owner, method, _timed(name, raw))


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter_ns()
        return
    spent = time.perf_counter_ns() - _gc_started[0]
    generation = info["generation"]
    GC["collections"][generation] += 1
    GC["ns"][generation] += spent
    _gc_ns[0] += spent


def _dump(*_: Any) -> None:
    path = os.environ["INSITU_PROBE_OUT"]
    with open(path + ".tmp", "w") as f:
        json.dump({"steps": STEPS, "gc": GC}, f)
    os.replace(path + ".tmp", path)


def install(guarded: bool) -> None:
    if guarded:
        _wrap(GUARD_STEPS)
    _wrap(BENTOML_STEPS)
    gc.callbacks.append(_on_gc)
    signal.signal(signal.SIGUSR1, _dump)
