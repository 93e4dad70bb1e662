"""Two `bentoml serve` workers sharing state through a real Redis.

Limits are exact across workers (and a day budget counts the answered rows
only: what a lost race took from it is given back), a block issued by one worker is enforced by
the other, and a Redis outage follows the policy (closed: 503) then recovers.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from bento_invguard import generate_key

from ..conftest import RedisServer
from .conftest import (
    copy_example,
    launch_serve,
    load_module,
    server_env,
    stop_process_tree,
    train,
    wait_ready,
)

pytestmark = [pytest.mark.integration, pytest.mark.redis]
LIMIT = 10  # public rows per minute in this test's policy
DAY = 1000  # and per day


@dataclass
class TwoWorkers:
    base_url: str
    keys: dict[str, str]
    x_test: np.ndarray
    log_path: Path
    redis_url: str

    def post(self, key_id: str, rows: Any) -> httpx.Response:
        body = json.dumps({"x": np.asarray(rows).tolist()})
        headers = {"X-API-Key": self.keys[key_id], "content-type": "application/json"}
        return httpx.post(self.base_url + "/predict", content=body, headers=headers, timeout=15)

    def workers_that_answered(self) -> set[str]:
        log = self.log_path.read_text(errors="replace")
        return set(re.findall(r"\[entry_service:digits_classifier:(\d+)\]", log))


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[TwoWorkers]:
    if not redis_server.running():
        redis_server.start()
    redis_server.flush()
    root = tmp_path_factory.mktemp("two_workers")
    app_dir = copy_example(root / "digits")
    service = app_dir / "service.py"
    service.write_text(
        service.read_text().replace(
            '@bentoml.service(name="digits_classifier")',
            '@bentoml.service(name="digits_classifier", workers=2)',
        )
    )
    policy = yaml.safe_load((app_dir / "invguard.yaml").read_text())
    policy["storage"] = redis_server.url
    policy["tiers"]["public"]["rate_limit"] = f"{LIMIT}/minute;{DAY}/day"
    policy["tiers"]["trusted"]["rate_limit"] = "1000/minute"
    (app_dir / "invguard.yaml").write_text(yaml.safe_dump(policy))
    keys = {f"it-public-{n}": generate_key() for n in range(4)}
    keys.update({f"it-trusted-{n}": generate_key() for n in range(2)})
    keys.update({f"it-trusted-{n}": generate_key() for n in range(100, 140)})  # rotation
    home = root / "bentoml_home"
    home.mkdir()
    env = server_env(home, keys)
    train(app_dir, env, root / "train.log")
    _, x_test, _, _ = load_module(app_dir / "model.py", "invguard_it_workers_model").load_split()
    log_path = root / "serve.log"
    proc, base_url = launch_serve(app_dir, env, log_path)
    try:
        wait_ready(proc, base_url, log_path)
        yield TwoWorkers(base_url, keys, x_test, log_path, redis_server.url)
    finally:
        stop_process_tree(proc)


def burst(server: TwoWorkers, key_ids: list[str], rows: np.ndarray) -> list[tuple[str, int]]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [
            (k, pool.submit(server.post, k, row[None, :]))
            for k, row in zip(key_ids, rows, strict=True)
        ]
        return [(k, f.result().status_code) for k, f in futures]


def test_exactly_the_limit_is_admitted_across_two_workers(two_workers: TwoWorkers) -> None:
    """One key, then three keys at once: each gets exactly LIMIT answers, the rest 429."""
    x = two_workers.x_test
    single = burst(two_workers, ["it-public-0"] * 16, x[:16])
    assert {200: LIMIT, 429: 16 - LIMIT} == dict(Counter(s for _, s in single))
    many_ids = [f"it-public-{1 + i % 3}" for i in range(45)]
    statuses = burst(two_workers, many_ids, x[16:61])
    for key_id in ("it-public-1", "it-public-2", "it-public-3"):
        got = Counter(s for k, s in statuses if k == key_id)
        assert {200: LIMIT, 429: 15 - LIMIT} == dict(got), key_id
    assert {"1", "2"} <= two_workers.workers_that_answered()
    # The day budget, read with limits' own strategy, counts the answered rows only.
    day = FixedWindowRateLimiter(storage_from_string(two_workers.redis_url))
    for key_id in ("it-public-0", "it-public-1", "it-public-2", "it-public-3"):
        stats = day.get_window_stats(
            parse(f"{DAY}/day"), "invguard", "fixed-window", "principal", key_id
        )
        assert DAY - LIMIT == stats.remaining, key_id


def test_a_chain_spread_over_keys_and_workers_gets_silent_answers(
    two_workers: TwoWorkers,
) -> None:
    """Both workers share the view: a chain of small steps from a digit towards another,
    a fresh key for every step, gets the chain's first answer once it is a cluster."""
    x = two_workers.x_test
    start, goal = x[3], x[7]
    answers = []
    for step in range(40):
        row = start + (goal - start) * step / 40 * 0.02  # steps of a fraction of a unit
        r = two_workers.post(f"it-trusted-{100 + step}", row[None, :])
        assert 200 == r.status_code, r.text
        answers.append(np.asarray(r.json()[0]))
    first = int(np.argmax(answers[0]))
    silent = [a for a in answers[5:] if float(a.max()) == 1.0 and int(np.argmax(a)) == first]
    assert len(answers[5:]) == len(silent)  # one-hot at the first class, whatever the key


def test_a_block_by_one_worker_is_enforced_by_the_other(two_workers: TwoWorkers) -> None:
    """A probing key is blocked; every later request, on either worker, is 403 blocked."""
    rng = np.random.default_rng(0)
    guess = two_workers.x_test[5]  # a real digit: the profile turns noise away first
    blocked_at = None
    for i in range(120):
        e = np.zeros(64)
        e[rng.integers(64)] = 0.5 if i % 2 else -0.5
        r = two_workers.post("it-trusted-0", np.clip(guess + e, 0, 16)[None, :])
        if r.status_code == 403:
            assert "blocked" == r.json()["error"]
            blocked_at = i + 1
            break
        assert 200 == r.status_code, r.text
    assert blocked_at is not None and blocked_at <= 100
    after = burst(two_workers, ["it-trusted-0"] * 12, two_workers.x_test[:12])
    assert all(s == 403 for _, s in after)
    assert 200 == two_workers.post("it-trusted-1", two_workers.x_test[:1]).status_code


def test_redis_outage_fails_closed_then_recovers(
    two_workers: TwoWorkers, redis_server: RedisServer
) -> None:
    """Redis stopped: 503 storage_unavailable within the timeout; back up: served again."""
    redis_server.stop()
    try:
        down = two_workers.post("it-trusted-1", two_workers.x_test[:1])
        assert 503 == down.status_code
        assert "storage_unavailable" == down.json()["error"]
        assert down.elapsed.total_seconds() < 3
    finally:
        redis_server.start()
    assert 200 == two_workers.post("it-trusted-1", two_workers.x_test[1:2]).status_code
