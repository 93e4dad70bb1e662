"""A real ``bentoml serve`` refuses to start on a broken policy, key file or storage URI.

Each case breaks one thing in a copy of the example and checks that the
server exits (non-zero, within a bound) with a message that names the file,
the field or the variable at fault, rather than starting and failing (or
failing open) at the first request. In process: a storage URI the guard could
never open is refused when the service is decorated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from benchmarks.support.serving import server_env

from .conftest import home_copy, prepare_app, serve_expecting_failure

#: A refusal must come quickly, not after a long retry loop.
REFUSAL_BOUND_S = 30.0
BAD_DIGEST = {"id": "x", "sha256": "not-a-digest", "tier": "public"}


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(policy: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = policy
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return edit


@dataclass
class Case:
    policy: Callable[[dict[str, Any]], None] | None = None
    service: Callable[[str], str] | None = None
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    expect: tuple[str, ...] = ()


CASES = {
    "policy file missing": Case(
        service=lambda s: s.replace('protect("invguard.yaml")', 'protect("nowhere.yaml")'),
        expect=("nowhere.yaml: file not found",),
    ),
    "policy not YAML": Case(
        files={"invguard.yaml": "version: 1\ntiers: {public: [unclosed\n"},
        expect=("invguard.yaml: not valid yaml",),
    ),
    "policy field invalid": Case(
        policy=_set("tiers.public.output", "everything"),
        expect=("tiers.public.output",),
    ),
    "policy min above max": Case(
        policy=_set("input.max", -1.0),
        expect=("input: min (0.0) is greater than max (-1.0)",),
    ),
    "rate limit notation": Case(
        policy=_set("tiers.partner.rate_limit", "lots per second"),
        expect=("tiers.partner.rate_limit", "'lots per second' is not a rate limit"),
    ),
    "required key file missing": Case(
        policy=_set("keys_from.required", True),
        expect=("keys.yaml: file not found",),
    ),
    "key file invalid": Case(
        files={"keys.yaml": json.dumps([BAD_DIGEST])},
        expect=("key file", "keys.yaml", "0.sha256", "64-character hex SHA-256 digest"),
    ),
    "key with unknown tier": Case(
        files={"keys.yaml": json.dumps([{"id": "gold-1", "sha256": "ab" * 32, "tier": "gold"}])},
        expect=("key 'gold-1': no tier named 'gold'",),
    ),
    "INVGUARD_KEYS not JSON": Case(
        env={"INVGUARD_KEYS": "[{not json"},
        expect=("environment variable INVGUARD_KEYS: not a JSON list of keys",),
    ),
    "profile missing": Case(
        policy=_set("input.profile", "gone.profile.json"),
        expect=("gone.profile.json: file not found",),
    ),
    "storage variable unset": Case(
        policy=_set("storage", "redis://:${INVGUARD_HARDENING_UNSET}@127.0.0.1:1/0"),
        expect=("environment variable INVGUARD_HARDENING_UNSET", "is not set"),
    ),
    "storage scheme unknown": Case(
        policy=_set("storage", "memcache://127.0.0.1:1"),
        expect=("storage 'memcache://127.0.0.1:1': unsupported scheme 'memcache'",),
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", list(CASES))
def test_serve_refuses_to_start_and_names_the_problem(
    name: str, tmp_path: Path, model_home: Path
) -> None:
    case = CASES[name]
    app_dir = prepare_app(tmp_path, policy=case.policy, service=case.service)
    for file_name, text in case.files.items():
        (app_dir / file_name).write_text(text)
    home = home_copy(model_home, tmp_path / "bentoml_home")
    env = server_env(home, {})
    env.pop("INVGUARD_KEYS")
    env.update(case.env)
    env.pop("INVGUARD_HARDENING_UNSET", None)
    started = time.monotonic()
    code, output = serve_expecting_failure(app_dir, env, tmp_path / "serve.log")
    elapsed = time.monotonic() - started
    assert code != 0, output[-3000:]
    assert elapsed < REFUSAL_BOUND_S
    for text in case.expect:
        assert text in output, f"{text!r} not in the output:\n{output[-3000:]}"
    assert "Uvicorn running" not in output and "listening on" not in output


@pytest.mark.parametrize(
    ("storage", "monitor", "message"),
    [
        ("memcached://127.0.0.1:11211", True, "unsupported scheme 'memcached'"),
        ("mongodb://127.0.0.1:1/x", False, "unsupported scheme 'mongodb'"),
        ("redis+sentinel://127.0.0.1:1/m", True, "the monitor keeps its state with redis://"),
        ("redis+cluster://127.0.0.1:1", True, "the monitor keeps its state with redis://"),
        ("redis://:hunter2@127.0.0.1:1/0?x=1", None, None),
        ("redis+sentinel://127.0.0.1:1/m", False, None),
    ],
)
def test_storage_the_guard_cannot_open_is_refused_when_decorating(
    storage: str, monitor: bool | None, message: str | None
) -> None:
    """Storage is opened at the first request; a URI it could never open is refused when
    the service is decorated (startup), with the password redacted, instead of turning
    every request into a 503 (closed) or switching the limits off (open)."""
    import bentoml
    import numpy as np

    from bento_invguard import GuardConfigError, Policy, protect

    data: dict[str, Any] = {"tiers": {"public": {}}, "storage": storage, "audit": {"sink": "none"}}
    if monitor is not None:
        data["monitor"] = {"enabled": monitor}
    policy = Policy.model_validate(data)

    def decorate() -> None:
        @protect(policy)
        @bentoml.service(name="stored")
        class Stored:
            @bentoml.api
            def predict(self, x: np.ndarray) -> np.ndarray:
                return x

    if message is None:
        decorate()
        return
    with pytest.raises(GuardConfigError, match=message) as info:
        decorate()
    assert "hunter2" not in str(info.value)
