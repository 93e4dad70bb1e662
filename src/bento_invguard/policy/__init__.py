"""Policy model and loading."""

from .loading import load_keys, policy_from_file, policy_from_mapping
from .model import (
    DEFAULT_OPEN_PATHS,
    InputPolicy,
    KeyEntry,
    KeySources,
    OutputMode,
    Policy,
    RateLimiting,
    Tier,
)

__all__ = [
    "DEFAULT_OPEN_PATHS",
    "InputPolicy",
    "KeyEntry",
    "KeySources",
    "OutputMode",
    "Policy",
    "RateLimiting",
    "Tier",
    "load_keys",
    "policy_from_file",
    "policy_from_mapping",
]
