"""The HTTP contract of DESIGN.md as one check every robustness test applies to every answer."""

from __future__ import annotations

import json
from typing import Any

#: reason -> the statuses it may come with.
REASONS: dict[str, set[int]] = {
    "invalid_header": {400},
    "unauthenticated": {401},
    "forbidden": {403},
    "blocked": {403},
    "payload_too_large": {413},
    "unsupported_media_type": {415},
    "invalid_input": {422},
    "rate_limited": {429},
    "storage_unavailable": {503},
}
#: The ``check`` field of a 422.
CHECKS = {"shape", "dtype", "finite", "range", "profile", "schema", "body"}


def rejection(response: Any, *, storage_down: bool = False) -> dict[str, Any] | None:
    """None for a 2xx; otherwise the contract's error body, asserted field by field.

    A 5xx fails the test (bad input must never produce one), except the contract's
    503 storage_unavailable when the test took the storage down (``storage_down``).
    """
    status = response.status_code
    if not (storage_down and status == 503):
        assert status < 500, f"{status} for bad input: {response.text[:500]}"
    if 200 <= status < 300:
        return None
    assert response.headers.get("content-type", "").startswith("application/json"), (
        status,
        response.headers,
        response.text[:300],
    )
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    reason = body.get("error")
    assert reason in REASONS, f"unknown reason {reason!r} ({status}): {body}"
    assert status in REASONS[reason], f"{reason} came with {status}"
    if status == 503:
        assert int(response.headers["retry-after"]) >= 1
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if reason == "invalid_input":
        assert body.get("check") in CHECKS, body
        position = body["position"]
        assert position is None or all(isinstance(i, int) for i in position), body
    if reason == "invalid_header":
        assert isinstance(body.get("header"), str) and body["header"] in body["detail"], body
    if status == 401:
        assert response.headers.get("www-authenticate", "").startswith("Bearer"), response.headers
    if status == 429:
        assert int(response.headers["retry-after"]) >= 1
    return body
