"""BentoML integration: @guard, @protect and trusted local calls."""

from .guard import guard, is_guarded
from .pipeline import GuardPipeline, local_caller
from .protect import protect

__all__ = ["GuardPipeline", "guard", "is_guarded", "local_caller", "protect"]
