"""Operator endpoints behind their own keys: list and clear monitor blocks."""

from .endpoints import ADMIN_PREFIX, AdminEndpoints

__all__ = ["ADMIN_PREFIX", "AdminEndpoints"]
