"""Output hardening: confidence truncation per tier."""

from .outputs import OutputHardener
from .truncation import truncate, truncate_for_tier

__all__ = ["OutputHardener", "truncate", "truncate_for_tier"]
