"""Faults around a guarded service (in process): each follows the policy, in bounded time.

- Redis refusing connections, paused (SIGSTOP: slower than any timeout),
  slow within the timeout, and flapping: ``on_storage_error: closed`` answers
  503 storage_unavailable, ``open`` serves; nobody gets past a limit while it
  flaps; counts and blocks made before a pause are enforced after it (Redis
  paused and resumed, not restarted, so nothing is reloaded).
- An OTLP collector that is not there: requests neither fail nor wait.
- An audit sink that cannot be written: requests are served, the failures
  are counted and logged, and the trail resumes once the sink is writable.
- A model that raises: a 500 that names nothing of the model, recorded as
  such; the next request is served.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from starlette.testclient import TestClient

from bento_invguard import Policy, generate_key, hash_key, protect
from bento_invguard.integration.guard import GUARD_ATTR
from bento_invguard.integration.recorder import Recorder

from ..conftest import RedisServer, forget_bentoml_metrics, free_port
from .conftest import Served, wait_for
from .contract import rejection

LIMIT = 5  # public rows per minute
#: Upper bounds on one request's latency while storage misbehaves. Every storage call is
#: bounded by the client's 0.25 s socket timeout and rate_limiting.timeout (0.5 s); a
#: request makes at most a handful of them, so "closed" fails at the first.
CLOSED_BOUND_S = 1.5
OPEN_BOUND_S = 4.0
HEALTHY_BOUND_S = 1.0
MODEL_RUNS: list[str] = []


class Keys:
    """Raw keys by principal id; the tier is the id's first part."""

    def __init__(self, *ids: str) -> None:
        self.raw = {key_id: generate_key() for key_id in ids}

    def entries(self) -> list[dict[str, str]]:
        return [
            {"id": key_id, "sha256": hash_key(key), "tier": key_id.split("-")[0]}
            for key_id, key in self.raw.items()
        ]


def make_policy(keys: Keys, **overrides: Any) -> Policy:
    data: dict[str, Any] = {
        "keys": keys.entries(),
        "keys_from": {"env": None},
        "tiers": {
            "public": {"output": "label", "rate_limit": f"{LIMIT}/minute"},
            "trusted": {"output": "full", "rate_limit": "1000/minute"},
        },
        "input": {"shape": [4], "min": 0.0, "max": 10.0, "max_body_bytes": 4096},
        "audit": {"sink": "none"},
    }
    data.update(overrides)
    return Policy.model_validate(data)


def build(policy: Policy, **options: Any) -> Any:
    @protect(policy, **options)
    @bentoml.service(name="faulty")
    class Faulty:
        @bentoml.api
        def predict(self, x: np.ndarray) -> np.ndarray:
            MODEL_RUNS.append("predict")
            z = np.asarray(x, dtype=np.float64)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))

        @bentoml.api
        def crash(self, x: np.ndarray) -> np.ndarray:
            MODEL_RUNS.append("crash")
            raise RuntimeError("model weights at /srv/secret-weights.npz are corrupt")

    return Faulty


@contextlib.contextmanager
def serving(policy: Policy, **options: Any) -> Iterator[tuple[TestClient, Any]]:
    service = build(policy, **options)
    forget_bentoml_metrics()
    with TestClient(service.to_asgi(), raise_server_exceptions=False) as client:
        yield client, service


def recorder_of(service: Any) -> Recorder:
    recorder: Recorder = getattr(service.apis["predict"].func, GUARD_ATTR).recorder
    return recorder


def timed_post(
    client: TestClient, key: str, row: list[float], path: str = "/predict"
) -> tuple[Any, float]:
    started = time.perf_counter()
    response = client.post(path, content=json.dumps({"x": [row]}), headers={"X-API-Key": key})
    return response, time.perf_counter() - started


def rows(n: int, seed: int = 0) -> list[list[float]]:
    """Distinct, far-apart rows (benign traffic for the monitor)."""
    rng = np.random.default_rng(seed)
    return [list(map(float, rng.uniform(0.0, 10.0, 4).round(3))) for _ in range(n)]


def probe_until_blocked(client: TestClient, key: str, limit: int = 120) -> int:
    """Near-duplicates of one point until the monitor blocks the key; the attempts taken."""
    rng = np.random.default_rng(1)
    base = np.array([5.0, 5.0, 5.0, 5.0])
    for i in range(limit):
        row = list(map(float, np.clip(base + rng.normal(0.0, 0.05, 4), 0.0, 10.0)))
        response, _ = timed_post(client, key, row)
        if response.status_code == 403:
            assert "blocked" == response.json()["error"]
            return i + 1
        assert 200 == response.status_code, response.text
    pytest.fail(f"the monitor did not block a probing key in {limit} queries")


@pytest.fixture(autouse=True)
def _clean() -> None:
    MODEL_RUNS.clear()


# ---------------------------------------------------------------- Redis
class Pauser:
    """SIGSTOP / SIGCONT the test session's redis-server: slow to the point of silence,
    and back, with its data in memory (not a restart)."""

    def __init__(self, server: RedisServer) -> None:
        proc = server.process
        assert proc is not None and hasattr(proc, "pid")
        self.pid: int = proc.pid
        self.paused = False

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False


@pytest.fixture
def pauser(redis_server: RedisServer, redis_url: str) -> Iterator[Pauser]:
    pauser = Pauser(redis_server)
    try:
        yield pauser
    finally:
        if pauser.paused:
            pauser.resume()


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_redis_refusing_connections_follows_the_policy(mode: str) -> None:
    """Nothing listens on the storage port: closed is 503 at once, open serves unlimited."""
    keys = Keys("public-0")
    policy = make_policy(keys, storage=f"redis://127.0.0.1:{free_port()}/0", on_storage_error=mode)
    with serving(policy) as (client, _):
        answers = [timed_post(client, keys.raw["public-0"], row) for row in rows(LIMIT + 2)]
    for response, elapsed in answers:
        refused = rejection(response, storage_down=True)
        assert elapsed < (CLOSED_BOUND_S if mode == "closed" else OPEN_BOUND_S), elapsed
        if mode == "closed":
            assert refused is not None and "storage_unavailable" == refused["error"]
            assert "1" == response.headers["retry-after"]
        else:
            assert refused is None, response.text
    assert (0 if mode == "closed" else LIMIT + 2) == len(MODEL_RUNS)


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_paused_redis_follows_the_policy_in_bounded_time(
    mode: str, redis_url: str, pauser: Pauser
) -> None:
    """Redis stops answering (SIGSTOP): closed 503 within 1.5 s, open served within 4 s."""
    keys = Keys("public-0", "trusted-0")
    policy = make_policy(keys, storage=redis_url, on_storage_error=mode)
    with serving(policy) as (client, _):
        assert 200 == timed_post(client, keys.raw["trusted-0"], rows(1)[0])[0].status_code
        MODEL_RUNS.clear()
        pauser.pause()
        try:
            answers = [timed_post(client, keys.raw["public-0"], row) for row in rows(3, seed=2)]
        finally:
            pauser.resume()
        after, elapsed_after = timed_post(client, keys.raw["public-0"], rows(1, seed=3)[0])
    for response, elapsed in answers:
        refused = rejection(response, storage_down=True)
        if mode == "closed":
            assert refused is not None and "storage_unavailable" == refused["error"]
            assert elapsed < CLOSED_BOUND_S, elapsed
        else:
            assert refused is None, response.text
            assert elapsed < OPEN_BOUND_S, elapsed
    assert (0 if mode == "closed" else 3) == len(MODEL_RUNS) - 1  # + the one after
    assert 200 == after.status_code and elapsed_after < HEALTHY_BOUND_S


@pytest.mark.redis
def test_redis_slow_within_the_timeout_still_serves(redis_url: str, pauser: Pauser) -> None:
    """Redis silent for 100 ms (less than the 250 ms socket timeout): served, not refused."""
    keys = Keys("public-0")
    policy = make_policy(keys, storage=redis_url, on_storage_error="closed")
    with serving(policy) as (client, _):
        assert 200 == timed_post(client, keys.raw["public-0"], rows(1)[0])[0].status_code
        statuses = []
        for row in rows(3, seed=4):
            pauser.pause()
            timer = threading.Timer(0.1, pauser.resume)
            timer.start()
            try:
                response, elapsed = timed_post(client, keys.raw["public-0"], row)
            finally:
                timer.join()
            statuses.append(response.status_code)
            assert elapsed < HEALTHY_BOUND_S + 0.1, elapsed
    assert [200, 200, 200] == statuses


@pytest.mark.redis
def test_flapping_redis_lets_nobody_past_a_limit(redis_url: str, pauser: Pauser) -> None:
    """Redis paused and resumed every ~100 ms while two principals query (closed): every
    answer is 200, 429 or 503 in bounded time, the limited principal never gets more than
    its limit, and once Redis is steady the limit still holds and others are served."""
    keys = Keys("public-0", "trusted-0")
    # The monitor stays on (its Redis calls flap too) but may not block: in 4
    # features, a few hundred random rows look like near-duplicates to it, and a
    # 403 would end the count this test is about.
    policy = make_policy(
        keys,
        storage=redis_url,
        on_storage_error="closed",
        monitor={"actions": {"block": False}},
    )
    stop = threading.Event()

    def flap() -> None:
        rng = np.random.default_rng(5)
        while not stop.is_set():
            pauser.pause()
            time.sleep(float(rng.uniform(0.05, 0.6)))  # often past the 0.25 s timeout
            pauser.resume()
            time.sleep(float(rng.uniform(0.05, 0.3)))

    with serving(policy) as (client, _):
        flapper = threading.Thread(target=flap, daemon=True)
        flapper.start()
        seen: Counter[tuple[str, int]] = Counter()
        try:
            deadline = time.monotonic() + 3.0
            for i, row in enumerate(rows(400, seed=6)):
                if time.monotonic() > deadline:
                    break
                who = "public-0" if i % 2 == 0 else "trusted-0"
                response, elapsed = timed_post(client, keys.raw[who], row)
                rejection(response, storage_down=True)
                assert response.status_code in (200, 429, 503), response.text
                assert elapsed < CLOSED_BOUND_S, (who, response.status_code, elapsed)
                seen[who, response.status_code] += 1
        finally:
            stop.set()
            flapper.join(timeout=5)
            if pauser.paused:
                pauser.resume()
        # It did flap (which principal met a pause is a matter of timing).
        assert seen["public-0", 503] + seen["trusted-0", 503] > 0, seen
        admitted = seen["public-0", 200]
        assert admitted <= LIMIT, seen
        steady = [
            timed_post(client, keys.raw["public-0"], row)[0].status_code
            for row in rows(LIMIT + 1, seed=7)
        ]
        trusted_after = timed_post(client, keys.raw["trusted-0"], rows(1, seed=8)[0])[0]
    assert admitted + steady.count(200) <= LIMIT, (seen, steady)
    assert 429 == steady[-1], steady
    assert 200 == trusted_after.status_code


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_counts_and_blocks_survive_a_pause(mode: str, redis_url: str, pauser: Pauser) -> None:
    """Spent rows and a monitor block made before Redis pauses are enforced after it
    resumes: the limited key gets only what was left, the blocked key stays blocked."""
    keys = Keys("public-0", "trusted-prober")
    policy = make_policy(keys, storage=redis_url, on_storage_error=mode)
    public, prober = keys.raw["public-0"], keys.raw["trusted-prober"]
    with serving(policy) as (client, _):
        before = [timed_post(client, public, row)[0].status_code for row in rows(3, seed=9)]
        assert [200, 200, 200] == before
        probe_until_blocked(client, prober)
        MODEL_RUNS.clear()
        pauser.pause()
        try:
            during = [timed_post(client, who, rows(1, seed=10)[0]) for who in (public, prober)]
        finally:
            pauser.resume()
        for response, elapsed in during:
            refused = rejection(response, storage_down=True)
            if mode == "closed":
                assert refused is not None and "storage_unavailable" == refused["error"]
                assert elapsed < CLOSED_BOUND_S, elapsed
            else:  # open: served while the storage is down, and recorded as not applied
                assert refused is None, response.text
                assert elapsed < OPEN_BOUND_S, elapsed
        after = [timed_post(client, public, row)[0].status_code for row in rows(4, seed=11)]
        blocked = rejection(timed_post(client, prober, rows(1, seed=12)[0])[0])
    assert blocked is not None and "blocked" == blocked["error"]
    left = LIMIT - len(before)
    if mode == "closed":
        assert [200] * left + [429] * (4 - left) == after
    else:  # an open-mode request may still have been counted once Redis read it
        assert after.count(200) <= left and after[-1] == 429, after


# ---------------------------------------------------------------- OTLP collector down
def test_a_missing_otlp_collector_neither_fails_nor_slows_requests() -> None:
    """Spans exported (batched, as BentoML does) to a port nothing listens on."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{free_port()}/v1/traces", timeout=1)
    results: list[SpanExportResult] = []
    export = exporter.export

    def counted_export(spans: Any) -> SpanExportResult:
        result = export(spans)
        results.append(result)
        return result

    exporter.export = counted_export  # type: ignore[method-assign]
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    keys = Keys("trusted-0")
    try:
        with serving(make_policy(keys), tracer_provider=provider) as (client, _):
            answers = [timed_post(client, keys.raw["trusted-0"], row) for row in rows(30)]
            for _ in range(40):  # let the exporter try (and fail) at least once
                if results:
                    break
                time.sleep(0.05)
                timed_post(client, keys.raw["trusted-0"], rows(1, seed=13)[0])
    finally:
        closer = threading.Thread(target=provider.shutdown, daemon=True)
        closer.start()
        closer.join(timeout=15)
    assert not closer.is_alive(), "shutting the tracer provider down did not end"
    assert all(200 == r.status_code for r, _ in answers)
    assert max(elapsed for _, elapsed in answers) < HEALTHY_BOUND_S
    assert results and SpanExportResult.FAILURE in results


@pytest.mark.integration
def test_a_real_server_exporting_to_no_collector_serves_in_bounded_time(
    guarded_server: Served, digit_rows: np.ndarray
) -> None:
    """``bentoml serve`` with tracing to an OTLP endpoint nothing listens on (sample rate
    1): every query answered, none slowed, and the failed exports are only logged."""
    failures = "Failed to export spans"
    before = guarded_server.log().count(failures)
    latencies = []
    for i, row in enumerate(digit_rows[100:130]):
        started = time.perf_counter()
        response = guarded_server.post(
            "/predict", {"x": [row.tolist()]}, key=guarded_server.key("trusted", i % 15)
        )
        latencies.append(time.perf_counter() - started)
        assert 200 == response.status_code, response.text
    assert max(latencies) < HEALTHY_BOUND_S, max(latencies)
    assert float(np.median(latencies)) < 0.1, latencies
    assert wait_for(lambda: guarded_server.log().count(failures) > before, timeout=15)


# ---------------------------------------------------------------- audit sink
def test_unwritable_audit_sink_serves_counts_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit directory is a file: queries are served, every lost record is counted
    and the failure logged; once the directory exists the trail resumes."""
    blocker = tmp_path / "audit"
    blocker.write_text("not a directory")
    keys = Keys("trusted-0")
    audit = {"sink": "jsonl", "path": str(blocker / "audit.jsonl")}
    with serving(make_policy(keys, audit=audit)) as (client, service):
        recorder = recorder_of(service)
        assert recorder.audit is not None
        answers = [timed_post(client, keys.raw["trusted-0"], row) for row in rows(5)]
        assert recorder.flush(10.0)
        errors = recorder.audit.errors
        blocker.unlink()
        blocker.mkdir()
        later = [timed_post(client, keys.raw["trusted-0"], row) for row in rows(3, seed=14)]
        assert recorder.flush(10.0)
    assert all(200 == r.status_code and t < HEALTHY_BOUND_S for r, t in answers + later)
    assert 5 == errors
    assert "audit sink jsonl failed" in caplog.text
    written = [json.loads(line) for line in (blocker / "audit.jsonl").read_text().splitlines()]
    assert 3 == len(written) and all(200 == r["status"] for r in written)


# ---------------------------------------------------------------- the model raises
def test_a_model_that_raises_is_a_500_that_leaks_nothing(tmp_path: Path) -> None:
    """The model's exception: 500 with BentoML's generic body (no message, no path), the
    query recorded with status 500, and the next query served."""
    keys = Keys("trusted-0")
    audit = {"sink": "jsonl", "path": str(tmp_path / "audit.jsonl")}
    with serving(make_policy(keys, audit=audit)) as (client, service):
        crashed, elapsed = timed_post(client, keys.raw["trusted-0"], rows(1)[0], path="/crash")
        fine, _ = timed_post(client, keys.raw["trusted-0"], rows(1, seed=15)[0])
        assert recorder_of(service).flush(10.0)
    assert 500 == crashed.status_code and elapsed < HEALTHY_BOUND_S
    assert "secret-weights" not in crashed.text and "RuntimeError" not in crashed.text
    assert 200 == fine.status_code
    assert ["crash", "predict"] == MODEL_RUNS
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [500, 200] == [r["status"] for r in records]
    assert "secret-weights" not in json.dumps(records)
