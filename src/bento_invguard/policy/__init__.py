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
from .watermark import WatermarkPolicy

__all__ = [
    "DEFAULT_OPEN_PATHS",
    "InputPolicy",
    "KeyEntry",
    "KeySources",
    "OutputMode",
    "Policy",
    "RateLimiting",
    "Tier",
    "WatermarkPolicy",
    "load_keys",
    "policy_from_file",
    "policy_from_mapping",
]
