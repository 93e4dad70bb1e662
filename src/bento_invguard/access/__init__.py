"""Access control: API keys, principals, tiers, and the ASGI middleware."""

from .authenticate import AccessControl, key_headers, presented_key
from .middleware import GuardMiddleware

__all__ = ["AccessControl", "GuardMiddleware", "key_headers", "presented_key"]
