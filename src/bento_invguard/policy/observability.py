"""Policy sections for transparency: where the audit trail goes and what it keeps.

>>> from bento_invguard.policy.observability import AuditPolicy
>>> AuditPolicy(sink="jsonl", path="audit/{worker}.jsonl", capture="digest").capture
'digest'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AuditSinkName = Literal["jsonl", "bentoml_monitor", "otel_logs", "none"]
AuditCapture = Literal["digest", "full"]

#: Where the JSON-lines audit trail goes when the policy names no path.
DEFAULT_AUDIT_PATH = "${BENTOML_HOME}/invguard/audit/audit.{worker}.jsonl"


class AuditPolicy(BaseModel):
    """One audit record per guarded query, written off the request path.

    ``capture: digest`` (the default) keeps a SHA-256 digest and summary
    statistics of the input and only the predicted classes of the output;
    ``capture: full`` also keeps the raw input rows and the model's full
    scores, and logs a warning at startup.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sink: AuditSinkName = Field(
        default="jsonl",
        description="jsonl: a rotated JSON-lines file; bentoml_monitor: bentoml.monitor; "
        "otel_logs: OpenTelemetry log records; none: no audit trail.",
    )
    path: Path | None = Field(
        default=None,
        description="jsonl file; relative paths resolve beside the policy, ${VAR} expands from "
        "the environment and {worker} becomes the BentoML worker index. Default: "
        + DEFAULT_AUDIT_PATH,
    )
    max_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, description="Rotate the jsonl file beyond this size."
    )
    backups: int = Field(default=5, ge=0, le=1000, description="Rotated jsonl files kept.")
    capture: AuditCapture = Field(
        default="digest",
        description="digest: no raw values; full: raw input rows and full model scores too.",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Records waiting for the writer thread; beyond it records are dropped "
        "and counted, never waited for.",
    )
    monitor_name: str = Field(
        default="invguard_audit", description="Monitor name for sink bentoml_monitor."
    )
    explain_rows: int = Field(
        default=8, ge=0, le=1024, description="Rows of a flagged query the explain hook sees."
    )
    explain_max_bytes: int = Field(
        default=2048,
        ge=64,
        le=65536,
        description="Largest explanation (as JSON) kept per row; larger ones are replaced "
        "by a note.",
    )
