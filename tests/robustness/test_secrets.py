"""No raw API key, valid or not, ever reaches a sink; digests are compared in constant time.

A real server gets allowed and rejected queries (bad keys, a near-miss of a
valid key, two different valid keys at once, the wrong scheme); then its whole
log output, every audit JSON-lines file under ``$BENTOML_HOME/invguard/audit/``
and every response (bodies and headers) are searched for every key presented.
In process, the same with every span (attributes and events) from an
in-memory exporter and every log record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import Policy, generate_key, hash_key, keys, protect

from ..conftest import forget_bentoml_metrics
from ..telemetry.helpers import make_otel
from .conftest import Served, wait_for


def fragments(key: str) -> list[str]:
    """What would give a key away: the key, its secret part, a 12-character prefix of it."""
    secret = key.removeprefix(keys.KEY_PREFIX)
    return [key, secret, secret[:12]]


def assert_no_key_in(texts: Iterable[tuple[str, str]], presented: Iterable[str]) -> None:
    needles = {frag: key for key in presented for frag in fragments(key)}
    for where, text in texts:
        for needle in needles:
            assert needle not in text, f"a presented key appears in {where}"


def mutate(key: str) -> str:
    """The same key with its last character changed: a near miss."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


def traffic(post: Any, valid: dict[str, str], row: list[float]) -> tuple[list[Any], list[str]]:
    """Allowed and rejected queries; the responses and every raw key string presented."""
    unknown = [generate_key() for _ in range(3)]
    near = mutate(valid["trusted"])
    sent: list[tuple[str, dict[str, str], Any, int]] = [
        ("/predict", {"Authorization": f"Bearer {valid['public']}"}, [row], 200),
        ("/predict", {"X-API-Key": valid["partner"]}, [row], 200),
        ("/logits", {"Authorization": f"Bearer {valid['trusted']}"}, [row], 200),
        ("/logits", {"X-API-Key": valid["public"]}, [row], 403),
        ("/predict", {"X-API-Key": valid["trusted"]}, [[99.0] * len(row)], 422),
        ("/predict", {"X-API-Key": valid["public"]}, [row] * 30, 429),
        ("/predict", {"Authorization": f"Bearer {unknown[0]}"}, [row], 401),
        ("/predict", {"X-API-Key": unknown[1]}, [row], 401),
        ("/predict", {"X-API-Key": near}, [row], 401),
        ("/predict", {"X-API-Key": valid["trusted"] + "x"}, [row], 401),
        ("/predict", {"Authorization": f"Basic {valid['trusted']}"}, [row], 401),
        (
            "/predict",
            {"Authorization": f"Bearer {unknown[2]}", "X-API-Key": valid["public"]},
            [row],
            401,
        ),
        (
            "/predict",
            {"Authorization": f"Bearer {valid['partner']}", "X-API-Key": valid["trusted"]},
            [row],
            401,
        ),
    ]
    responses = []
    for path, headers, x, status in sent:
        response = post(path, {"x": x}, headers)
        assert status == response.status_code, (path, status, response.text)
        responses.append(response)
    presented = [*valid.values(), *unknown, near, valid["trusted"] + "x"]
    return responses, presented


def response_texts(responses: Iterable[Any]) -> list[tuple[str, str]]:
    return [
        (f"response {i} ({r.status_code})", r.text + json.dumps(dict(r.headers)))
        for i, r in enumerate(responses)
    ]


@pytest.mark.integration
def test_no_key_reaches_any_sink_of_a_real_server(
    guarded_server: Served, digit_rows: np.ndarray
) -> None:
    server = guarded_server
    valid = {tier: server.key(tier, 15) for tier in ("public", "partner", "trusted")}

    def post(path: str, body: Any, headers: dict[str, str]) -> Any:
        return server.post(path, body, headers=headers)

    before = server.audit_text().count("\n")
    responses, presented = traffic(post, valid, digit_rows[0].tolist())
    server.presented.update(presented)
    # Every guarded query is audited; wait until this test's are on disk. The
    # writer batches, and records of earlier tests on this shared server may
    # land after ``before`` was read, so wait for this test's principals too.
    ours = ("it-public-15", "it-partner-15", "it-trusted-15")

    def written() -> bool:
        text = server.audit_text()
        return text.count("\n") >= before + len(responses) and all(k in text for k in ours)

    assert wait_for(written)  # the sink has the queries
    audit = server.audit_text()
    sinks = [
        ("the server's output", server.log()),
        ("the audit trail", audit),
        *response_texts(responses),
    ]
    assert_no_key_in(sinks, server.presented)


def test_no_key_reaches_spans_logs_audit_or_bodies_in_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    valid = {tier: generate_key() for tier in ("public", "partner", "trusted")}
    policy = Policy.model_validate(
        {
            "keys": [
                {"id": f"user-{t}", "sha256": hash_key(k), "tier": t} for t, k in valid.items()
            ],
            "keys_from": {"env": None},
            "tiers": {
                "public": {"output": "label", "endpoints": ["predict"], "rate_limit": "20/minute"},
                "partner": {"output": "top_k", "k": 3},
                "trusted": {"output": "full"},
            },
            "input": {"shape": [4], "min": 0.0, "max": 10.0},
            "audit": {"sink": "jsonl", "path": str(tmp_path / "audit.jsonl")},
        }
    )
    otel = make_otel()

    @protect(policy, tracer_provider=otel.tracer_provider)
    @bentoml.service(name="secretive")
    class Secretive:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            return np.full((len(x), 3), 1.0 / 3.0)

        @bentoml.api
        def logits(self, x: np.ndarray) -> np.ndarray:
            return np.zeros((len(x), 3))

    caplog.set_level("DEBUG")
    forget_bentoml_metrics()
    with TestClient(Secretive.to_asgi(), raise_server_exceptions=False) as client:

        def post(path: str, body: Any, headers: dict[str, str]) -> Any:
            return client.post(path, content=json.dumps(body), headers=headers)

        responses, presented = traffic(post, valid, [1.0, 2.0, 3.0, 4.0])
        recorder = getattr(Secretive.apis["predict"].func, "__invguard_pipeline__").recorder
        assert recorder.flush(10.0)
    spans = otel.spans.get_finished_spans()
    guarded = [s for s in spans if s.name == "invguard.query"]
    assert len(guarded) == len(responses)
    span_text = json.dumps(
        [
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [(e.name, dict(e.attributes or {})) for e in s.events],
                "status": str(s.status.description),
            }
            for s in spans
        ],
        default=str,
    )
    assert "user-public" in span_text  # the principal id is there, the key is not
    log_text = "\n".join(
        record.getMessage() + (caplog.text if record.exc_info else "") for record in caplog.records
    )
    audit = (tmp_path / "audit.jsonl").read_text()
    assert len(audit.splitlines()) == len(responses)
    sinks = [("spans", span_text), ("logs", log_text), ("audit", audit)]
    assert_no_key_in([*sinks, *response_texts(responses)], presented)


def test_key_lookup_compares_digests_with_hmac_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every lookup, hit or miss, goes through hmac.compare_digest, on 32-byte digests
    (never on the presented key)."""
    calls: list[tuple[bytes, bytes]] = []
    real = keys.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    known = generate_key()
    ring = keys.KeyRing([("alice", hash_key(known), "public")])
    presented = [known, generate_key(), mutate(known), known.encode(), ""]
    found = [ring.lookup(k) for k in presented]
    assert ["alice", None, None, "alice", None] == [p.id if p else None for p in found]
    assert len(presented) == len(calls)
    for a, b in calls:
        assert 32 == len(a) == len(b)
        assert known.encode() not in (a, b)
