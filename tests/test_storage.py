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
def test_a_bug_is_a_500_internal_error_never_storage_unavailable(
    on_storage_error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A storage outage follows on_storage_error; a bug in the control is refused with
    500 internal_error under either policy, and its log names the control and keeps
    the traceback."""
    failures = StorageFailures(
        Policy(tiers={"public": {}}, on_storage_error=on_storage_error), "monitor", "monitor"
    )

    def fail(exc: Exception) -> GuardRejection | None:
        ctx = QueryContext(endpoint="predict")
        try:
            raise exc
        except Exception as raised:
            try:
                failures(ctx, raised)
            except GuardRejection as rejection:
                assert ctx.rejection is rejection
                return rejection
        return None

    with caplog.at_level(logging.WARNING, logger="bento_invguard"):
        outage = fail(ConnectionError("redis down"))
        bug = fail(IndexError("index 1 is out of bounds"))
    assert (None if on_storage_error == "open" else 503) == (outage and outage.status)
    assert bug is not None
    assert (500, "internal_error") == (bug.status, bug.reason)
    assert "storage" not in bug.detail
    storage_log, bug_log = caplog.records
    assert logging.WARNING == storage_log.levelno
    assert "storage failed" in storage_log.getMessage()
    assert logging.ERROR == bug_log.levelno
    assert "the monitor control failed unexpectedly" in bug_log.getMessage()
    assert bug_log.exc_info is not None and IndexError is bug_log.exc_info[0]
