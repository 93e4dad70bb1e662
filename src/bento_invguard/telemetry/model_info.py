"""The served model's tag, version and age, as spans and audit records name them."""

from __future__ import annotations

import logging
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
