"""BentoMLMonitorSink: audit records through ``bentoml.monitor``.

``bentoml.monitor`` needs one fixed set of columns (its schema is written
with the first record), so every record is logged under the same columns;
nested parts (decisions, risk, model) are JSON strings. BentoML's monitoring
configuration decides where they go (by default JSON logs under
``monitoring/<name>/`` of the working directory, or OTLP).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Sequence
from typing import Any

#: column -> (role, data type) in bentoml.monitor's vocabulary.
COLUMNS: dict[str, tuple[str, str]] = {
    "query_time": ("feature", "categorical"),
    "trace": ("feature", "categorical"),
    "span": ("feature", "categorical"),
    "principal": ("feature", "categorical"),
    "tier": ("feature", "categorical"),
    "endpoint": ("feature", "categorical"),
    "status": ("feature", "numerical"),
    "decision": ("feature", "categorical"),
    "reason": ("feature", "categorical"),
    "input_sha256": ("feature", "categorical"),
    "input_rows": ("feature", "numerical"),
    "input_summary": ("feature", "categorical"),
    "output_mode": ("prediction", "categorical"),
    "predicted": ("prediction", "numerical_sequence"),
    "risk": ("feature", "numerical"),
    "risk_detail": ("feature", "categorical"),
    "decisions": ("feature", "categorical"),
    "model": ("feature", "categorical"),
    "extra": ("feature", "categorical"),
}


def monitor_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The record flattened into :data:`COLUMNS`."""
    inputs = dict(record.get("input") or {})
    output = record.get("output") or {}
    risk = record.get("risk") or {}
    extra = {k: record[k] for k in ("explanations", "raw") if k in record}
    return {
        "query_time": record.get("time"),
        "trace": record.get("trace_id"),
        "span": record.get("span_id"),
        "principal": record.get("principal"),
        "tier": record.get("tier"),
        "endpoint": record.get("endpoint"),
        "status": record.get("status"),
        "decision": record.get("decision"),
        "reason": record.get("reason"),
        "input_sha256": inputs.pop("sha256", None),
        "input_rows": inputs.get("rows"),
        "input_summary": _json(inputs),
        "output_mode": output.get("mode"),
        "predicted": output.get("predicted") or [],
        "risk": risk.get("score"),
        "risk_detail": _json(risk),
        "decisions": _json(record.get("decisions")),
        "model": _json(record.get("model")),
        "extra": _json(extra) if extra else None,
    }


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class BentoMLMonitorSink:
    """Logs each record as one row of the monitor ``monitor_name``."""

    name = "bentoml_monitor"

    def __init__(self, monitor_name: str) -> None:
        self.monitor_name = monitor_name

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        for record in records:
            # A fresh context per record: bentoml.monitor keeps its row in context
            # variables, and a row left half-written by an error must not stick.
            contextvars.Context().run(self._log, monitor_columns(record))

    def _log(self, columns: dict[str, Any]) -> None:
        import bentoml

        with bentoml.monitor(self.monitor_name) as mon:
            for column, (role, data_type) in COLUMNS.items():
                mon.log(columns[column], name=column, role=role, data_type=data_type)

    def flush(self) -> None:
        """bentoml.monitor writes through logging handlers; nothing is buffered here."""

    def close(self) -> None:
        """The monitor belongs to BentoML; it is not closed here."""
