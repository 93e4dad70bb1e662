"""Rate limits and query budgets per principal and per endpoint."""

from .limiter import RateLimiter
from .status import LimitStatus

__all__ = ["LimitStatus", "RateLimiter"]
