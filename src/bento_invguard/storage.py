"""One storage URI for all shared state, opened through the limits library."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import re
import time
from typing import Any

from .context import QueryContext
from .errors import GuardConfigError, GuardRejection, InternalError, ServiceUnavailable
from .policy import Policy
from .policy.settings import environment_settings

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
logger = logging.getLogger("bento_invguard")

#: Bounded timeouts so that a slow or dead Redis never hangs a request.
REDIS_DEFAULTS: dict[str, float | int | bool] = {
    "socket_timeout": 0.25,
    "socket_connect_timeout": 0.25,
    "retry_on_timeout": False,
}


def storage_uri(policy: Policy, environ: Any = None) -> str:
    """The policy's storage URI, overridden by INVGUARD_STORAGE, with ${VAR} expanded
    from ``environ`` (the process environment by default)."""
    environ = os.environ if environ is None else environ
    uri = environment_settings().storage or policy.storage

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise GuardConfigError(
                f"storage: environment variable {name} used in {redacted(uri)!r} is not set"
            )
        return str(environ[name])

    return _VAR.sub(expand, uri)


def is_memory(uri: str) -> bool:
    return uri.split("://", 1)[0] in ("memory", "async+memory")


def redacted(uri: str) -> str:
    """The URI without its password, for logs and errors."""
    scheme, sep, rest = uri.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


#: Schemes the rate limiter opens (through limits) with the Redis options above.
LIMITER_SCHEMES = frozenset({"redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster"})
#: Schemes the monitor's state store (a redis-py client) opens.
MONITOR_SCHEMES = frozenset({"redis", "rediss"})


def check_storage(policy: Policy) -> None:
    """Refuse at startup a storage URI that would only fail at the first request.

    Storage is opened on first use (it belongs to the serving event loop), so
    a URI the guard cannot open would otherwise turn every request into a 503
    (on_storage_error: closed) or silently switch the limits off (open).
    """
    uri = storage_uri(policy)
    if is_memory(uri):
        return
    scheme = uri.partition("://")[0].removeprefix("async+") if "://" in uri else ""
    if scheme not in LIMITER_SCHEMES:
        raise GuardConfigError(
            f"storage {redacted(uri)!r}: unsupported scheme {scheme!r}; use memory:// or "
            "redis://host:6379/0 (also rediss://, redis+sentinel://, redis+cluster://)"
        )
    if policy.monitor.enabled and scheme not in MONITOR_SCHEMES:
        raise GuardConfigError(
            f"storage {redacted(uri)!r}: the monitor keeps its state with redis:// or "
            f"rediss:// only, not {scheme}://; use one of those or set monitor.enabled: false"
        )


def open_async_storage(policy: Policy) -> Any:
    """A limits async storage for the policy's URI (memory:// or redis://...)."""
    from limits.errors import ConfigurationError
    from limits.storage import storage_from_string

    uri = storage_uri(policy)
    options: dict[str, Any] = dict(policy.storage_options)
    if not is_memory(uri):
        options = {**REDIS_DEFAULTS, "implementation": "redispy", **options}
        options["wrap_exceptions"] = True
    try:
        return storage_from_string("async+" + uri.removeprefix("async+"), **options)
    except ConfigurationError as exc:
        raise GuardConfigError(f"storage {redacted(uri)!r}: {exc}") from None


async def close_async_storage(storage: Any) -> None:
    """Release what an async limits storage holds: Redis connections, expiry tasks."""
    bridge = getattr(storage, "bridge", None)
    if bridge is not None:
        client = bridge.get_connection()
        closer = getattr(client, "aclose", None) or getattr(client, "close", None)
        if closer is not None:
            try:
                await closer()
            except Exception as exc:  # closing a broken connection must not fail shutdown
                logger.debug("bento_invguard: closing the storage failed: %r", exc)
    timer = getattr(storage, "timer", None)
    if timer is not None and not timer.done():
        timer.cancel()


class StorageContention(RuntimeError):
    """State kept changing under an update (too many concurrent writers of one key)."""


@functools.cache
def _storage_error_types() -> tuple[type[BaseException], ...]:
    from limits.errors import ConfigurationError, StorageError

    found: list[type[BaseException]] = [
        OSError,  # ConnectionError and socket errors
        TimeoutError,
        asyncio.TimeoutError,  # the same class from Python 3.11 on, not before
        StorageError,
        ConfigurationError,
        StorageContention,
    ]
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the redis extra is not installed
        pass
    else:
        found.append(RedisError)
    return tuple(found)


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the storage failing (network, timeout, Redis, limits' storage
    errors, contention), as opposed to a bug in the guard."""
    return isinstance(exc, _storage_error_types())


class StorageFailures:
    """What a control does when its storage fails: the policy's ``on_storage_error``.

    ``closed`` refuses the query with 503 ``storage_unavailable``; ``open``
    serves it and records that the control was not applied. Either way one
    warning per 10 seconds at most, so an outage does not flood the log. An
    exception that is not the storage failing is a bug in the control: 500
    ``internal_error`` (see :func:`refuse_internal_error`), never a 503.
    """

    def __init__(
        self, policy: Policy, control: str, what: str, *, fail_open: bool | None = None
    ) -> None:
        """``fail_open`` overrides the policy where refusing cannot help (the query
        is refused already, for instance)."""
        self.fail_open = policy.on_storage_error == "open" if fail_open is None else fail_open
        self.control = control
        self.what = what
        self._last_warning = -math.inf

    def __call__(self, ctx: QueryContext, exc: BaseException) -> None:
        if not is_storage_error(exc):
            raise refuse_internal_error(ctx, self.control, exc)
        now = time.monotonic()
        if now - self._last_warning > 10.0:
            self._last_warning = now
            logger.warning(
                "bento_invguard: %s storage failed (%r); %s",
                self.what,
                exc,
                "served without it" if self.fail_open else "refused with 503",
            )
        if self.fail_open:
            ctx.decide(self.control, "not_applied", f"storage error: {type(exc).__name__}")
            return
        raise ctx.reject(
            ServiceUnavailable(
                f"the {self.what} storage is unavailable, so the request was refused "
                "(on_storage_error: closed); try again shortly",
                headers={"Retry-After": "1"},
            ),
            self.control,
        )


def refuse_internal_error(ctx: QueryContext, control: str, exc: BaseException) -> GuardRejection:
    """A bug in ``control``: logged with its traceback and the control's name, every
    time, and the query refused with 500 ``internal_error`` (fail closed, whatever
    ``on_storage_error`` says: that policy is for storage outages, not for bugs)."""
    logger.error(
        "bento_invguard: the %s control failed unexpectedly (%r); refused with 500 internal_error",
        control,
        exc,
        exc_info=exc,
    )
    return ctx.reject(
        InternalError(f"the server failed to apply its {control} control; see its log"),
        control,
    )
