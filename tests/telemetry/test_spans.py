"""One span per guarded query, for every decision path, through BentoML's real ASGI app."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from bento_invguard.telemetry import attributes as a

from .helpers import ROW, Served, scores, telemetry_policy


@pytest.fixture(scope="module")
def served(
    serve: Callable[..., Served], keys: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Served:
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    policy = telemetry_policy(keys, audit={"path": str(audit)})
    return serve(policy, keys, audit)


def only_span(served: Served) -> ReadableSpan:
    spans = served.otel.finished()
    assert 1 == len(spans), [s.attributes for s in spans]
    return spans[0]


def call_allowed(s: Served) -> Any:
    return s.post("/predict", [ROW], tier="public")


def call_without_key(s: Served) -> Any:
    return s.post("/predict", [ROW])


def call_forbidden_endpoint(s: Served) -> Any:
    return s.post("/admin", [ROW], tier="public")


def call_too_large(s: Served) -> Any:
    return s.post("/predict", [ROW] * 400, tier="trusted")


def call_pickle(s: Served) -> Any:
    headers = {"content-type": "application/vnd.bentoml+pickle"}
    return s.post("/predict", tier="trusted", content=b"\x80\x04", headers=headers)


def call_invalid(s: Served) -> Any:
    return s.post("/predict", [[1.0, 2.0, 11.0, 3.0]], tier="trusted")


def call_over_limit(s: Served) -> Any:
    s.post("/predict", [ROW], tier="limited")
    s.otel.spans.clear()
    return s.post("/predict", [ROW], tier="limited")


def call_crash(s: Served) -> Any:
    return s.post("/crash", [ROW], tier="trusted")


PATHS = [
    pytest.param(call_allowed, 200, a.ALLOW, None, "user-public", id="200"),
    pytest.param(call_without_key, 401, a.REJECT, "unauthenticated", None, id="401"),
    pytest.param(call_forbidden_endpoint, 403, a.REJECT, "forbidden", "user-public", id="403"),
    pytest.param(call_too_large, 413, a.REJECT, "payload_too_large", "user-trusted", id="413"),
    pytest.param(call_pickle, 415, a.REJECT, "unsupported_media_type", "user-trusted", id="415"),
    pytest.param(call_invalid, 422, a.REJECT, "invalid_input", "user-trusted", id="422"),
    pytest.param(call_over_limit, 429, a.REJECT, "rate_limited", "user-limited", id="429"),
    pytest.param(call_crash, 500, a.ALLOW, "500", "user-trusted", id="500"),
]


@pytest.mark.parametrize(("call", "status", "decision", "reason", "principal"), PATHS)
def test_every_decision_path_has_one_span(
    served: Served,
    call: Callable[[Served], Any],
    status: int,
    decision: str,
    reason: str | None,
    principal: str | None,
) -> None:
    """Each path ends in exactly one invguard.query span with decision, error.type, status."""
    served.otel.spans.clear()
    response = call(served)
    assert status == response.status_code, response.text
    span = only_span(served)
    attrs = dict(span.attributes or {})
    assert decision == attrs[a.DECISION]
    assert status == attrs[a.HTTP_STATUS]
    assert reason == attrs.get(a.ERROR_TYPE)
    assert principal == attrs.get(a.PRINCIPAL)
    expected_endpoint = {"call_forbidden_endpoint": "admin", "call_crash": "crash"}
    assert expected_endpoint.get(call.__name__, "predict") == attrs[a.ENDPOINT]
    if reason is not None and decision == a.REJECT:
        assert reason == response.json()["error"]


@pytest.mark.parametrize(("call", "status", "decision", "reason", "principal"), PATHS)
def test_span_status_is_error_only_for_5xx(
    served: Served,
    call: Callable[[Served], Any],
    status: int,
    decision: str,
    reason: str | None,
    principal: str | None,
) -> None:
    """Rejections are the guard working, not errors: only a 5xx marks the span ERROR."""
    served.otel.spans.clear()
    call(served)
    expected = StatusCode.ERROR if status >= 500 else StatusCode.UNSET
    assert expected == only_span(served).status.status_code


def test_allowed_query_span_carries_what_was_answered(served: Served) -> None:
    """Principal, tier, digest of the validated input, rows, output mode, predicted class."""
    served.otel.spans.clear()
    rows = [ROW, [3.0, 0.0, 1.0, 0.0]]
    assert 200 == served.post("/predict", rows, tier="public").status_code
    attrs = dict(only_span(served).attributes or {})
    expected_digest = hashlib.sha256(np.asarray(rows, dtype=np.float64).tobytes()).hexdigest()
    assert expected_digest == attrs[a.INPUT_SHA256]
    assert 2 == attrs[a.INPUT_ROWS]
    assert "public" == attrs[a.TIER]
    assert "label" == attrs[a.OUTPUT_MODE]
    assert tuple(int(i) for i in scores(np.array(rows)).argmax(axis=1)) == attrs[a.PREDICTED]
    assert isinstance(attrs[a.RISK], float)


def test_span_is_a_child_of_bentoml_server_span(served: Served) -> None:
    """The span is started in the context of BentoML's OpenTelemetry middleware span."""
    served.otel.spans.clear()
    served.post("/predict", [ROW], tier="public")
    span = only_span(served)
    assert span.parent is not None and span.parent.is_valid
    assert span.context is not None
    assert span.parent.trace_id == span.context.trace_id
    assert span.parent.span_id != span.context.span_id


def test_each_control_decision_is_listed_and_rejections_are_events(served: Served) -> None:
    """Every decision is in invguard.decisions, in order; a rejection is also a span event."""
    served.otel.spans.clear()
    served.post("/predict", [ROW], tier="trusted")
    span = only_span(served)
    decisions = list((span.attributes or {})[a.DECISIONS])
    assert "access:authenticated:trusted" == decisions[0]
    assert any(d.startswith("validate:pass:") for d in decisions)
    assert [] == list(span.events)  # nothing changed the answer

    served.otel.spans.clear()
    served.post("/predict", [[float("nan")] * len(ROW)], tier="trusted")
    span = only_span(served)
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert [("invguard.validate", "reject")] == [(n, at["invguard.outcome"]) for n, at in events]
    assert "validate:reject:invalid_input" == list((span.attributes or {})[a.DECISIONS])[-1]


def test_no_key_ever_reaches_a_span(served: Served) -> None:
    """The raw API key appears in no attribute and no event of any span."""
    served.otel.spans.clear()
    for tier in served.keys:
        served.post("/predict", [ROW], tier=tier)
        served.post("/admin", [ROW], tier=tier)
    dumped = json.dumps(
        [
            [dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events]]
            for s in served.otel.spans.get_finished_spans()
        ]
    )
    for key in served.keys.values():
        assert key not in dumped


def test_audit_record_names_the_span(served: Served) -> None:
    """The audit record carries the trace and span ids of the query's span."""
    served.otel.spans.clear()
    served.post("/predict", [ROW], tier="public")
    span = only_span(served)
    assert span.context is not None
    record = served.audit_records()[-1]
    assert format(span.context.trace_id, "032x") == record["trace_id"]
    assert format(span.context.span_id, "016x") == record["span_id"]
