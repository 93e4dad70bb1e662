"""bento_invguard: defend BentoML services against model inversion and extraction.

>>> from bento_invguard import hash_key
>>> len(hash_key("my-key"))
64
"""

from .artifacts import Attachment, attach, load_attached_policy
from .context import Decision, QueryContext, current_query
from .errors import (
    Blocked,
    Forbidden,
    GuardConfigError,
    GuardRejection,
    InvalidHeader,
    InvalidInput,
    PayloadTooLarge,
    PolicyError,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
)
from .hardening import truncate
from .integration import guard, local_caller, protect
from .keys import generate_key, hash_key
from .policy import InputPolicy, Policy, Tier
from .reference import Profile

__version__ = "0.1.0"

__all__ = [
    "Attachment",
    "Blocked",
    "Decision",
    "Forbidden",
    "GuardConfigError",
    "GuardRejection",
    "InputPolicy",
    "InvalidHeader",
    "InvalidInput",
    "PayloadTooLarge",
    "Policy",
    "PolicyError",
    "Profile",
    "QueryContext",
    "RateLimited",
    "Tier",
    "Unauthenticated",
    "UnsupportedMediaType",
    "__version__",
    "attach",
    "current_query",
    "generate_key",
    "guard",
    "hash_key",
    "load_attached_policy",
    "local_caller",
    "protect",
    "truncate",
]
