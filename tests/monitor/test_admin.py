"""Operators list and clear blocks: the admin endpoint and `invguard blocks`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from bento_invguard import generate_key, hash_key
from bento_invguard.cli import main

from ..conftest import forget_bentoml_metrics
from .test_monitor_http import build, post, probe_stream

ADMIN = generate_key()


def test_admin_endpoint_lists_and_clears_blocks(
    tier_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin key lists the block with its reason and clears it; others may not."""
    monkeypatch.setenv(
        "INVGUARD_ADMIN_KEYS", json.dumps([{"id": "ops", "sha256": hash_key(ADMIN)}])
    )
    forget_bentoml_metrics()
    with TestClient(build(tier_keys).to_asgi(), raise_server_exceptions=False) as client:
        for row in probe_stream(60):
            post(client, tier_keys["trusted"], row)
        assert 401 == client.get("/invguard/admin/blocks").status_code
        denied = client.get("/invguard/admin/blocks", headers={"X-API-Key": tier_keys["trusted"]})
        assert 403 == denied.status_code and "forbidden" == denied.json()["error"]
        listed = client.get("/invguard/admin/blocks", headers={"X-API-Key": ADMIN}).json()["blocks"]
        assert 1 == len(listed) and listed[0]["principal"].endswith(":user-trusted")
        assert "=" in listed[0]["reason"]  # the signals that blocked it
        cleared = client.delete("/invguard/admin/blocks/user-trusted", headers={"X-API-Key": ADMIN})
        assert {"cleared": True} == cleared.json()
        assert 200 == post(client, tier_keys["trusted"], [1.0, 2.0, 3.0, 4.0]).status_code


def test_admin_endpoint_absent_without_admin_keys(
    tier_keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no admin key configured, the admin path is just another guarded path."""
    monkeypatch.delenv("INVGUARD_ADMIN_KEYS", raising=False)
    forget_bentoml_metrics()
    with TestClient(build(tier_keys).to_asgi(), raise_server_exceptions=False) as client:
        r = client.get("/invguard/admin/blocks", headers={"X-API-Key": tier_keys["trusted"]})
        assert 404 == r.status_code


def write_policy(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "invguard.yaml"
    path.write_text(
        yaml.safe_dump({"tiers": {"public": {}}, "storage": storage, "keys_from": {"env": None}})
    )
    return path


def test_cli_blocks_explains_memory_storage(tmp_path: Path, capsys: Any) -> None:
    """With memory:// the CLI says where blocks live instead of showing nothing."""
    assert 2 == main(["blocks", "list", "--policy", str(write_policy(tmp_path, "memory://"))])
    assert "/invguard/admin/blocks" in capsys.readouterr().err


@pytest.mark.redis
def test_cli_lists_and_clears_redis_blocks(tmp_path: Path, redis_url: str, capsys: Any) -> None:
    """`invguard blocks list|clear` works on the blocks workers share in Redis."""
    import asyncio

    from bento_invguard import Policy
    from bento_invguard.monitor import Monitor

    policy_path = write_policy(tmp_path, redis_url)

    async def block() -> None:
        mon = Monitor(Policy.from_file(policy_path), model_version=lambda: "m:v1")
        await mon.store.block("m:v1:mallory", 600, "probing=0.95")
        await mon.aclose()

    asyncio.run(block())
    assert 0 == main(["blocks", "list", "--policy", str(policy_path)])
    out = capsys.readouterr().out
    assert "m:v1:mallory" in out and "probing=0.95" in out
    assert 0 == main(["blocks", "clear", "mallory", "--policy", str(policy_path)])
    assert 0 == main(["blocks", "list", "--policy", str(policy_path), "--json"])
    assert [] == json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert 1 == main(["blocks", "clear", "mallory", "--policy", str(policy_path)])
