"""Audit sinks, chosen by the policy's ``audit.sink``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...bentoml_bridge import bentoml_home, worker_index
from ...policy.observability import DEFAULT_AUDIT_PATH, AuditPolicy
from .base import AuditSink
from .bentoml_monitor import BentoMLMonitorSink
from .jsonl import JsonlSink, shared_jsonl_sink
from .otel_logs import OTelLogSink

__all__ = [
    "AuditSink",
    "BentoMLMonitorSink",
    "JsonlSink",
    "OTelLogSink",
    "audit_path",
    "build_sink",
    "shared_jsonl_sink",
]


def audit_path(spec: AuditPolicy, base_dir: Path) -> Path:
    """The jsonl file: ``${VAR}`` expanded, ``{worker}`` filled in, relative to ``base_dir``.

    >>> from bento_invguard.policy.observability import AuditPolicy
    >>> audit_path(AuditPolicy(path="audit/{worker}.jsonl"), Path("/srv"))
    PosixPath('/srv/audit/0.jsonl')
    """
    raw = str(spec.path) if spec.path is not None else DEFAULT_AUDIT_PATH
    raw = raw.replace("${BENTOML_HOME}", bentoml_home())
    raw = os.path.expandvars(raw).replace("{worker}", str(worker_index()))
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base_dir / path


def build_sink(spec: AuditPolicy, base_dir: Path, *, logger_provider: Any = None) -> AuditSink:
    """The sink the policy names (not for ``sink: none``)."""
    if spec.sink == "jsonl":
        path = audit_path(spec, base_dir)
        return shared_jsonl_sink(path, max_bytes=spec.max_bytes, backups=spec.backups)
    if spec.sink == "bentoml_monitor":
        return BentoMLMonitorSink(spec.monitor_name)
    if spec.sink == "otel_logs":
        return OTelLogSink(logger_provider)
    raise ValueError(f"audit.sink {spec.sink!r} writes nothing")
