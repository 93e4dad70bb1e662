"""A storage failure and a bug in a control are told apart in the log; both follow the policy."""

from __future__ import annotations

import logging

import pytest

from bento_invguard import Policy, QueryContext
from bento_invguard.errors import GuardRejection
from bento_invguard.storage import StorageFailures, is_storage_error


def test_storage_errors_are_recognised() -> None:
    import redis
    from limits.errors import StorageError

    from bento_invguard.monitor.store import UpdateContention

    for exc in (
        ConnectionError("refused"),
        TimeoutError(),
        redis.exceptions.ConnectionError("down"),
        StorageError(Exception("x")),
        UpdateContention("busy key"),
    ):
        assert is_storage_error(exc), exc
    for exc in (ValueError("x"), KeyError("k"), ZeroDivisionError()):
        assert not is_storage_error(exc), exc


@pytest.mark.parametrize("on_storage_error", ["closed", "open"])
def test_a_bug_is_logged_as_a_bug_with_its_traceback(
    on_storage_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    failures = StorageFailures(
        Policy(tiers={"public": {}}, on_storage_error=on_storage_error), "monitor", "monitor"
    )

    def fail(exc: Exception) -> None:
        ctx = QueryContext(endpoint="predict")
        try:
            raise exc
        except Exception as raised:
            try:
                failures(ctx, raised)
            except GuardRejection as rejection:
                assert rejection.status == 503  # closed: refused either way

    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        fail(ConnectionError("redis down"))
        fail(ValueError("shape mismatch in the monitor"))
    storage, bug = caplog.records
    assert storage.levelno == logging.WARNING and "storage failed" in storage.getMessage()
    assert bug.levelno == logging.ERROR and "failed unexpectedly" in bug.getMessage()
    assert bug.exc_info is not None and bug.exc_info[0] is ValueError
