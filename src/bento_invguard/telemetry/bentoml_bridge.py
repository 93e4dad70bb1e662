"""The one place telemetry reaches into BentoML's internals.

BentoML builds its own tracer provider from the service's ``tracing``
configuration and never sets it as the global provider, so spans must be
started from it to join BentoML's traces. Everything here is read lazily, at
the first query: at import time BentoML has not loaded the serving
configuration yet, and the model store may not be readable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

logger = logging.getLogger("bento_invguard")


@dataclass(frozen=True)
class ModelInfo:
    """The served model as spans and audit records name it."""

    tag: str
    version: str | None = None
    created: datetime | None = None

    def age_days(self, now: datetime | None = None) -> float | None:
        """Days since the model was created (``None`` when unknown)."""
        if self.created is None:
            return None
        now = now or datetime.now(timezone.utc)
        return (now - self.created).total_seconds() / 86400.0


def bentoml_tracer_provider() -> Any | None:
    """The tracer provider of BentoML's own server spans, or ``None`` without BentoML."""
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return BentoMLContainer.tracer_provider.get()
    except Exception:  # BentoML missing or misconfigured: fall back to the global provider
        logger.debug("bento_invguard: BentoML's tracer provider is unavailable", exc_info=True)
        return None


def worker_index() -> int:
    """Index of this BentoML worker process (0 outside a BentoML server)."""
    try:
        from bentoml._internal.context import server_context

        return int(server_context.worker_index or 0)
    except Exception:
        return 0


def bentoml_home() -> str:
    """BentoML's home directory (``$BENTOML_HOME``, default ``~/bentoml``)."""
    home = os.environ.get("BENTOML_HOME")
    if home:
        return home
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        return str(BentoMLContainer.bentoml_home.get())
    except Exception:
        return os.path.join(os.path.expanduser("~"), "bentoml")


def describe_models(models: Sequence[Any]) -> ModelInfo | None:
    """The first model of a service (``service.models``) from the local model store.

    Reads only the local store: nothing is pulled over the network at
    request time. A model that is not found is described by its declared tag.
    """
    for model in models:
        try:
            return _describe(model)
        except Exception:
            logger.warning("bento_invguard: cannot describe model %r", model, exc_info=True)
            return ModelInfo(tag=str(getattr(model, "tag", model)))
    return None


def _describe(model: Any) -> ModelInfo:
    stored = getattr(model, "stored", None)  # BentoModel: the local store's Model or None
    if stored is None and hasattr(model, "info") and hasattr(model, "tag"):
        stored = model  # a bentoml.models.Model itself
    if stored is not None:
        tag = stored.tag
        created = getattr(stored.info, "creation_time", None)
        if isinstance(created, datetime) and created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        return ModelInfo(tag=str(tag), version=tag.version, created=created)
    tag = getattr(model, "tag", None)
    if tag is not None:
        return ModelInfo(tag=str(tag), version=getattr(tag, "version", None))
    model_id = getattr(model, "model_id", None)  # HuggingFaceModel
    revision = getattr(model, "revision", None)
    if model_id is not None:
        return ModelInfo(tag=f"{model_id}:{revision or 'main'}", version=revision)
    return ModelInfo(tag=str(model))
