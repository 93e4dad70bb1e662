"""Input validation: strict checks and the reference profile."""

from .checks import InputValidator
from .profile import Profile, Violation

__all__ = ["InputValidator", "Profile", "Violation"]
