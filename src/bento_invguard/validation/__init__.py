"""Input validation: strict checks, and the reference profile's check of every row."""

from ..reference import Profile, Violation
from .checks import InputValidator

__all__ = ["InputValidator", "Profile", "Violation"]
