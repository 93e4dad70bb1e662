"""Finding the stored BentoML model that a tag, a BentoModel or a Model refers to."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeAlias

from ..errors import GuardConfigError

MODEL_YAML = "model.yaml"

#: What attach() and load_attached_policy() accept: a tag ("name:version",
#: "name:latest" or a bentoml.Tag), a bentoml.models.BentoModel, or a
#: bentoml Model (from bentoml.models.get() or bentoml.models.create()).
ModelRef: TypeAlias = "str | Any"


def stored_model(ref: ModelRef) -> Any:
    """The ``bentoml.Model`` for ``ref``; a GuardConfigError naming it if there is none."""
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    if isinstance(ref, bentoml.Model):
        return _saved_or_in_creation(ref)
    if isinstance(ref, bentoml.models.BentoModel):
        model = ref.stored
        if model is None:
            raise GuardConfigError(f"model {str(ref.tag)!r} is not in the local model store")
        return model
    if isinstance(ref, (str, bentoml.Tag)):
        try:
            return bentoml.models.get(ref)
        except NotFound:
            raise GuardConfigError(f"model {str(ref)!r} is not in the local model store") from None
        except (BentoMLException, ValueError) as exc:
            raise GuardConfigError(f"model {str(ref)!r}: {exc}") from None
    raise GuardConfigError(
        "expected a model tag, a bentoml.models.BentoModel or a bentoml Model, "
        f"got {type(ref).__name__}"
    )


def _saved_or_in_creation(model: Any) -> Any:
    """The model as stored, once ``bentoml.models.create()`` has saved it.

    The object that ``create()`` yields keeps the path of its temporary
    folder after the block, when BentoML has moved the files into the store:
    anything written there would never reach the stored model.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        saved = bentoml.models.get(model.tag)
    except NotFound:
        if in_creation(model) and Path(model.path).is_dir():
            return model
        raise GuardConfigError(
            f"model {str(model.tag)!r} is not in the local model store (its folder "
            f"{model.path} is gone); save it with bentoml.models.create() first"
        ) from None
    return saved


def in_creation(model: Any) -> bool:
    """Whether ``model`` is still inside ``bentoml.models.create()``.

    BentoML writes ``model.yaml`` (with the custom metadata) when that block
    ends; every saved model has one. Until then the metadata can still change.
    """
    return not (Path(model.path) / MODEL_YAML).is_file()


def model_name(model: Any) -> str:
    """How errors name a model: ``model 'name:version'``."""
    return f"model {str(model.tag)!r}"
