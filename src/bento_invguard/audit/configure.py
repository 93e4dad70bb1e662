"""From the policy's ``audit`` section to a running audit trail (or none)."""

from __future__ import annotations

import logging
from typing import Any

from ..policy import Policy
from ..telemetry.metrics import GuardMetrics
from ..telemetry.options import ExplainHook
from .explain import Explainer
from .sinks import build_sink
from .writer import AuditWriter

logger = logging.getLogger("bento_invguard")


def audit_writer(
    policy: Policy,
    metrics: GuardMetrics,
    *,
    logger_provider: Any = None,
    explain: ExplainHook | None = None,
) -> AuditWriter | None:
    """The writer for ``policy.audit``; ``None`` for ``sink: none``.

    Warns once, at startup, when the policy keeps raw inputs and full scores.
    """
    spec = policy.audit
    if spec.sink == "none":
        return None
    if spec.capture == "full":
        logger.warning(
            "bento_invguard: audit.capture is 'full': raw model inputs and full scores are "
            "written to the %s audit sink. Such records can rebuild what callers sent and "
            "what the model knows; protect and expire them accordingly.",
            spec.sink,
        )
    explainer = None
    if explain is not None:
        explainer = Explainer(
            explain,
            rows=spec.explain_rows,
            max_bytes=spec.explain_max_bytes,
            on_error=metrics.explain_error,
        )
    base_dir = policy.base_dir
    return AuditWriter(
        lambda: build_sink(spec, base_dir, logger_provider=logger_provider),
        sink_name=spec.sink,
        metrics=metrics,
        queue_size=spec.queue_size,
        full=spec.capture == "full",
        explainer=explainer,
    )
