"""Rate limits and query budgets per principal and per endpoint."""

from .limiter import LimitStatus, RateLimiter

__all__ = ["LimitStatus", "RateLimiter"]
