"""``/invguard/admin/blocks``: what the monitor blocked, and clearing a block.

    GET    /invguard/admin/blocks              -> {"blocks": [{principal, until, reason}]}
    DELETE /invguard/admin/blocks/<principal>  -> {"cleared": true|false}

Only admin keys may call them: the policy's ``admin_keys``, the
``admin_keys`` section of its key file, or INVGUARD_ADMIN_KEYS; with no
admin key configured the paths do not exist (404).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from pydantic import TypeAdapter, ValidationError
from starlette.types import Scope, Send

from ..access.authenticate import key_headers, presented_key
from ..errors import Forbidden, GuardRejection, PolicyError, Unauthenticated
from ..keys import KeyRing
from ..monitor import Monitor
from ..policy import Policy
from ..policy.loading import format_validation_error, read_document
from ..policy.model import AdminKey, key_clash
from ..policy.settings import environment_settings

ADMIN_PREFIX = "/invguard/admin/blocks"


def load_admin_keys(policy: Policy, *, environment: bool = True) -> list[AdminKey]:
    """The policy's ``admin_keys``, the ``admin_keys`` section of its key file
    (``keys_from.file``: what ``invguard keygen --admin`` writes) and, unless
    ``environment`` is False, INVGUARD_ADMIN_KEYS."""
    keys = [*policy.admin_keys, *_key_file_admin_keys(policy)]
    if environment:
        keys += environment_settings().admin_keys
    clash = key_clash(keys)
    if clash is not None:
        raise PolicyError(f"admin keys: {clash}")
    return keys


def _key_file_admin_keys(policy: Policy) -> list[AdminKey]:
    if policy.keys_from.file is None:
        return []
    path = policy.resolve(policy.keys_from.file)
    if not path.exists():
        return []
    data = read_document(path)
    entries = data.get("admin_keys") if isinstance(data, Mapping) else None
    try:
        return TypeAdapter(list[AdminKey]).validate_python(entries or [])
    except ValidationError as exc:
        raise PolicyError(format_validation_error(exc, f"key file {path}, admin_keys")) from None


class AdminEndpoints:
    def __init__(self, policy: Policy, monitor: Monitor) -> None:
        self.monitor = monitor
        self.ring = KeyRing((k.id, k.sha256, "admin") for k in load_admin_keys(policy))

    @property
    def enabled(self) -> bool:
        return len(self.ring) > 0

    def handles(self, path: str) -> bool:
        return self.enabled and (path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/"))

    async def __call__(self, scope: Scope, send: Send) -> GuardRejection | None:
        """Answer an admin request; return a rejection instead when it is not allowed."""
        try:
            key = presented_key(key_headers(scope["headers"]))
        except GuardRejection as rejection:
            return rejection
        if key is None:
            return Unauthenticated("an admin key is required")
        if self.ring.lookup(key) is None:
            return Forbidden("this key is not an admin key")
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == ADMIN_PREFIX:
            await _json(send, 200, {"blocks": await self.monitor.blocks()})
        elif method == "DELETE" and path.startswith(ADMIN_PREFIX + "/"):
            principal = unquote(path[len(ADMIN_PREFIX) + 1 :])
            listed = {b["principal"] for b in await self.monitor.blocks()}
            key_name = principal if principal in listed else self.monitor.principal_key(principal)
            await _json(send, 200, {"cleared": await self.monitor.unblock(key_name)})
        else:
            await _json(send, 405, {"error": "method_not_allowed", "detail": f"{method} {path}"})
        return None


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
