"""What one exchange with the endpoint says: its record, the stop and refusal errors, counts.

The guard answers a refusal with ``{"error": reason, "detail": ...}``;
:func:`reason_of` reads it (or names the status when the body is not the
guard's), :func:`retry_after_seconds` reads a ``Retry-After`` header.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

#: Reasons after which no further query can succeed with this key.
FATAL_REASONS = frozenset(
    {"unauthenticated", "forbidden", "blocked", "storage_unavailable", "server_error"}
)
_STATUS_REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    503: "storage_unavailable",
}


class Stopped(Exception):
    """The attack must stop: ``reason`` is ``budget``, ``blocked``, ``rate_limited``, ..."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Rejected(Exception):
    """This request was refused on its own (e.g. ``invalid_input``); others may pass."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Exchange:
    """One request: which rows (1-based first row, count), what came back."""

    first_row: int
    rows: int
    status: int  # 0: no HTTP answer (connection failed)
    reason: str  # "ok" or the rejection reason
    retry_after: float | None = None
    detail: str = ""
    canary: bool = False


@dataclass
class OracleStats:
    """Counts in rows (queries), and when each defence first showed."""

    sent: int = 0
    answered: int = 0
    requests: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_rate_limited_at: int | None = None
    degraded_at: int | None = None
    blocked_at: int | None = None
    waited_s: float = 0.0
    soft_rows: int = 0
    one_hot_rows: int = 0

    @property
    def answers(self) -> str:
        """``scores`` if any answer was soft, ``labels`` if all were one-hot, else ``none``."""
        if self.soft_rows:
            return "scores"
        return "labels" if self.one_hot_rows else "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "requests": self.requests,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "first_rate_limited_at": self.first_rate_limited_at,
            "degraded_at": self.degraded_at,
            "blocked_at": self.blocked_at,
            "waited_s": round(self.waited_s, 2),
            "answers": self.answers,
        }


def one_hot_rows(answers: np.ndarray) -> np.ndarray:
    """Per row: exactly one 1 and every other value 0 (a label, not scores)."""
    ones = answers == 1.0
    return np.asarray((ones.sum(axis=1) == 1) & ((answers == 0.0) | ones).all(axis=1))


def reason_of(response: httpx.Response) -> tuple[str, str]:
    """The guard's ``{"error": reason, "detail": ...}``, or a reason from the status."""
    default = _STATUS_REASONS.get(response.status_code)
    if default is None:
        default = "server_error" if response.status_code >= 500 else f"http_{response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return default, response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        detail = body.get("detail")
        return body["error"], detail if isinstance(detail, str) else ""
    return default, json.dumps(body)[:200]


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds only; dates are ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
