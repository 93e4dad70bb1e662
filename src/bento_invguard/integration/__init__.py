"""BentoML integration: @guard, @protect and trusted local calls."""

from .guard import guard, is_guarded
from .local_caller import local_caller
from .pipeline import GuardPipeline
from .protect import protect

__all__ = ["GuardPipeline", "guard", "is_guarded", "local_caller", "protect"]
