"""One real ``bentoml serve`` of the digits example, shared by the end-to-end tests.

The session fixture :func:`digits_server`:

1. copies ``examples/digits`` to a temp dir (the committed profile is never
   rewritten in place, and a local ``keys.yaml`` / ``.demo-keys`` is left out);
2. trains the model there into a temp ``BENTOML_HOME`` (``python train.py``);
3. makes fresh keys per tier and hands their digests to the server in
   ``INVGUARD_KEYS``: a pool per tier that requests take in turn, so that the
   example's per-principal rate limits never refuse a functional test, and
   one "burst" key per tier for the tests that hit a limit on purpose;
4. starts ``bentoml serve service:DigitsClassifier`` on a free loopback port,
   output captured to ``serve.log``, and waits for ``GET /readyz == 200``;
5. stops the whole process tree at the end of the session.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from benchmarks.support.serving import (  # the one copy, shared with the benchmarks
    LOG_TAIL_CHARS,
    copy_example,
    launch_serve,
    load_module,
    server_env,
    stop_process_tree,
    train,
    wait_ready,
)

from bento_invguard import generate_key

TIERS = ("public", "partner", "trusted")
#: Keys per tier that requests use in turn. The example limits each principal
#: (e.g. public: 20 rows a second); the whole session sends under ~100
#: requests per tier, so each pooled key carries only a few of them.
KEYS_PER_TIER = 48


@dataclass
class DigitsServer:
    """A running guarded digits service and what the tests need to talk to it."""

    base_url: str
    pools: dict[str, list[str]] = field(repr=False)
    burst_keys: dict[str, str] = field(repr=False)
    model: Any  # the example's SoftmaxModel, loaded from the trained weights
    x_test: np.ndarray
    y_test: np.ndarray
    app_dir: Path
    log_path: Path
    client: httpx.Client = field(repr=False)
    _turns: dict[str, Iterator[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._turns = {tier: itertools.cycle(keys) for tier, keys in self.pools.items()}

    def key(self, tier: str) -> str:
        """The next key of the tier's pool (a different principal than the last call's)."""
        return next(self._turns[tier])

    def auth(self, tier: str) -> dict[str, str]:
        """``Authorization: Bearer`` header with the tier's next pooled key."""
        return {"Authorization": f"Bearer {self.key(tier)}"}

    def policy(self) -> dict[str, Any]:
        """The policy the server runs (the example's invguard.yaml, as copied)."""
        return dict(yaml.safe_load((self.app_dir / "invguard.yaml").read_text()))

    def post(
        self,
        path: str,
        *,
        tier: str | None = None,
        json_body: Any = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """POST to the server; ``tier`` adds that tier's Bearer key.

        ``json_body`` is serialised with the standard library (so ``NaN`` or
        ``Infinity`` never sneak in); ``content`` is sent as is.
        """
        sent = dict(headers or {})
        if tier is not None:
            sent.update(self.auth(tier))
        if json_body is not None:
            content = json.dumps(json_body, allow_nan=False)
            sent.setdefault("content-type", "application/json")
        return self.client.post(path, content=content, headers=sent, **kwargs)

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        return text[-chars:]


@pytest.fixture(scope="session")
def digits_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DigitsServer]:
    """The digits example served guarded by a real ``bentoml serve`` on loopback."""
    root = tmp_path_factory.mktemp("digits_serve")
    app_dir = copy_example(root / "digits")
    bentoml_home = root / "bentoml_home"
    bentoml_home.mkdir()
    pools = {tier: [generate_key() for _ in range(KEYS_PER_TIER)] for tier in TIERS}
    burst_keys = {tier: generate_key() for tier in TIERS}
    by_id = {f"it-{tier}-{n}": key for tier, keys in pools.items() for n, key in enumerate(keys)}
    by_id.update({f"it-{tier}-burst": key for tier, key in burst_keys.items()})
    env = server_env(bentoml_home, by_id)
    weights = train(app_dir, env, root / "train.log")

    model_module = load_module(app_dir / "model.py", "invguard_it_digits_model")
    model = model_module.SoftmaxModel.load(str(weights))
    _, x_test, _, y_test = model_module.load_split()

    log_path = root / "serve.log"
    proc, base_url = launch_serve(app_dir, env, log_path)
    try:
        wait_ready(proc, base_url, log_path)
        with httpx.Client(base_url=base_url, timeout=15.0) as client:
            yield DigitsServer(
                base_url=base_url,
                pools=pools,
                burst_keys=burst_keys,
                model=model,
                x_test=x_test,
                y_test=y_test,
                app_dir=app_dir,
                log_path=log_path,
                client=client,
            )
    finally:
        stop_process_tree(proc)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the tail of the server's output to a failed test that used the server."""
    report = yield
    server = getattr(item, "funcargs", {}).get("digits_server")
    if report.failed and isinstance(server, DigitsServer):
        report.sections.append(("bentoml serve output (tail)", server.log_tail()))
    return report
