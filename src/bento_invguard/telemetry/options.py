"""What a service hands the recorder besides its policy: providers, models, a hook."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: ``explain(x_row, scores_row) -> small dict``: why the model answered a flagged row so.
ExplainHook = Callable[[Any, Any], Mapping[str, Any]]


@dataclass(frozen=True)
class TelemetryOptions:
    """Optional wiring of a :class:`~bento_invguard.telemetry.Recorder`.

    ``tracer_provider`` / ``meter_provider`` / ``logger_provider``: OpenTelemetry
    providers to use instead of BentoML's tracer provider and the global ones.
    ``models``: the service's BentoML models (``service.models``); their tag,
    version and creation time go on every span and audit record, read from
    the model store at the first query. ``explain``: see :data:`ExplainHook`,
    called for flagged queries on the audit writer thread (so it must be
    thread-safe).

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> TelemetryOptions(tracer_provider=TracerProvider()).explain is None
    True
    """

    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    models: Sequence[Any] = ()
    explain: ExplainHook | None = None
    #: Set by protect() / guard(): spans go to BentoML's tracer provider by default.
    under_bentoml: bool = False
