"""The audit record of one guarded query.

:meth:`AuditEntry.of` runs on the request path and only copies references;
:meth:`AuditEntry.to_record` runs on the writer thread and does the work:
digest, summary statistics, explanations, JSON-ready values.

Record schema (version 1)::

    {"schema": 1, "time": "2025-01-31T12:00:00.000000+00:00",
     "trace_id": "4bf9...", "span_id": "00f0...",
     "principal": "alice", "tier": "public", "endpoint": "predict",
     "path": "/predict", "client": "10.0.0.7",
     "status": 200, "decision": "allow", "reason": null, "duration_ms": 1.9,
     "input": {"sha256": "...", "rows": 1, "shape": [1, 64], "dtype": "float64",
               "min": 0.0, "max": 16.0, "mean": 4.9, "std": 6.0},
     "output": {"mode": "label", "predicted": [3]},
     "decisions": [{"control": "access", "outcome": "authenticated", "detail": "public"}],
     "risk": {"score": 0.1, "reasons": [], "flagged": false, "degraded": false},
     "model": {"tag": "digits:abc", "version": "abc", "created": "2025-01-30T..."},
     "explanations": [...],           # flagged queries, with an explain hook only
     "raw": {"input": [[...]], "scores": [[...]]}}   # capture: full only
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..context import Decision, QueryContext
from ..telemetry.inputs import input_sha256, input_summary
from ..telemetry.model_info import ModelInfo
from ..telemetry.outcome import Outcome
from .jsonsafe import json_safe

SCHEMA_VERSION = 1


@dataclass(slots=True)
class AuditEntry:
    """A snapshot of a finished query; cheap to take, converted off the request path."""

    time: float
    principal: str | None
    tier: str | None
    endpoint: str | None
    path: str
    client: str | None
    outcome: Outcome
    rows: int
    output_mode: str | None
    predicted: list[int] | None
    decisions: list[Decision]
    risk: float
    risk_reasons: list[str]
    flagged: bool
    degraded: bool
    model: ModelInfo | None
    trace_id: str | None
    span_id: str | None
    input: Any = None
    scores: Any = None
    explanations: list[Any] | None = field(default=None)

    @classmethod
    def of(cls, ctx: QueryContext, outcome: Outcome, model: ModelInfo | None) -> AuditEntry:
        trace_id, span_id = _span_ids(ctx.span, ctx.trace_context)
        return cls(
            time=time.time(),
            principal=ctx.principal,
            tier=ctx.tier_name,
            endpoint=ctx.endpoint,
            path=ctx.path,
            client=ctx.client,
            outcome=outcome,
            rows=ctx.rows,
            output_mode=ctx.output_mode,
            predicted=list(ctx.predicted) if ctx.predicted is not None else None,
            decisions=list(ctx.decisions),
            risk=float(ctx.risk),
            risk_reasons=[str(r) for r in ctx.risk_reasons],
            flagged=ctx.flagged,
            degraded=ctx.degraded,
            model=model,
            trace_id=trace_id,
            span_id=span_id,
            input=ctx.input,
            scores=ctx.scores,
        )

    def to_record(self, *, full: bool = False) -> dict[str, Any]:
        """The JSON-ready record; raw input and full scores only when ``full``."""
        outcome = self.outcome
        summary = input_summary(self.input)
        if summary is not None:
            digest = outcome.input_sha256 or input_sha256(self.input)
            summary = {"sha256": digest, **summary}
        record: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "time": datetime.fromtimestamp(self.time, timezone.utc).isoformat(),
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "principal": self.principal,
            "tier": self.tier,
            "endpoint": self.endpoint,
            "path": self.path,
            "client": self.client,
            "status": outcome.status,
            "decision": outcome.decision,
            "reason": outcome.reason,
            "duration_ms": round(outcome.duration_s * 1000.0, 3),
            "input": summary if summary is not None else {"rows": self.rows},
            "output": {"mode": self.output_mode, "predicted": self.predicted},
            "decisions": [
                {"control": d.control, "outcome": d.outcome, "detail": d.detail}
                for d in self.decisions
            ],
            "risk": {
                "score": json_safe(self.risk),
                "reasons": self.risk_reasons,
                "flagged": self.flagged,
                "degraded": self.degraded,
            },
            "model": _model(self.model),
        }
        if self.explanations is not None:
            record["explanations"] = self.explanations
        if full:
            record["raw"] = {"input": json_safe(self.input), "scores": json_safe(self.scores)}
        return record


def _span_ids(span: Any, fallback: Any = None) -> tuple[str | None, str | None]:
    """Trace and span id of the query's span, else of the request's (``fallback``)."""
    try:
        sc = span.get_span_context() if span is not None else fallback
    except Exception:
        return None, None
    if sc is None or not sc.is_valid:
        return None, None
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


def _model(model: ModelInfo | None) -> dict[str, Any] | None:
    return None if model is None else dict(_described(model))  # each record its own dict


@functools.lru_cache(maxsize=64)
def _described(model: ModelInfo) -> dict[str, Any]:
    """The served model's part of a record, built once per model (ModelInfo is frozen)."""
    created = model.created.isoformat() if model.created is not None else None
    return {"tag": model.tag, "version": model.version, "created": created}
