"""Access control: API keys, principals and tiers."""

from .authenticate import AccessControl, key_headers, presented_key

__all__ = ["AccessControl", "key_headers", "presented_key"]
