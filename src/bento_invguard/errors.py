"""Rejections and configuration errors.

A control vetoes a query by raising a :class:`GuardRejection`; the rejection
carries its HTTP status, a stable low-cardinality ``reason`` and a human
``detail``. The HTTP layer turns it into ``{"error": reason, "detail": detail}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class GuardConfigError(Exception):
    """The policy or the way the guard is applied is wrong; raised at startup.

    Not a ValueError on purpose: BentoML's service loader turns a ValueError
    raised while importing a bento's service into "No module named ...",
    which would hide the message that names the problem.
    """


class PolicyError(GuardConfigError):
    """A policy file or object failed validation; the message names the field."""


class GuardRejection(Exception):
    """A control refused the query. Subclasses fix ``status`` and ``reason``."""

    status: ClassVar[int] = 400
    reason: ClassVar[str] = "rejected"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of the HTTP error response."""
        return {"error": self.reason, "detail": self.detail}


class Unauthenticated(GuardRejection):
    status = 401
    reason = "unauthenticated"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="invguard"'})


class InvalidHeader(GuardRejection):
    """400. ``header`` names the request header whose bytes were refused (lower case)."""

    status = 400
    reason = "invalid_header"

    def __init__(self, header: str, detail: str) -> None:
        super().__init__(detail)
        self.header = header

    def body(self) -> dict[str, Any]:
        return {**super().body(), "header": self.header}


class Forbidden(GuardRejection):
    status = 403
    reason = "forbidden"


class Blocked(GuardRejection):
    status = 403
    reason = "blocked"


class PayloadTooLarge(GuardRejection):
    status = 413
    reason = "payload_too_large"


class UnsupportedMediaType(GuardRejection):
    status = 415
    reason = "unsupported_media_type"


class InvalidInput(GuardRejection):
    """422. ``check`` names the failed check: shape, dtype, finite, range, profile, schema.

    ``position`` is the index of the offending value (``[row, column]``, one
    index per dimension) for the finite, range and profile-bounds checks, the
    row (``[row]``) when the profile finds a row far from the data, and None
    (``null`` in the body) when no single value is at fault.
    """

    status = 422
    reason = "invalid_input"

    def __init__(self, check: str, detail: str, *, position: Sequence[int] | None = None) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.position = None if position is None else [int(i) for i in position]

    def body(self) -> dict[str, Any]:
        return {**super().body(), "check": self.check, "position": self.position}


class RateLimited(GuardRejection):
    status = 429
    reason = "rate_limited"


class ServiceUnavailable(GuardRejection):
    status = 503
    reason = "storage_unavailable"


class InternalError(GuardRejection):
    """500. A bug inside a control, or a service the guard cannot apply to as written.

    The server log names the control and says why; the body says only that
    the guard failed, so a caller learns nothing about the service from it.
    """

    status = 500
    reason = "internal_error"
