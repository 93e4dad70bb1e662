"""RateLimitedLog: report a recurring failure without flooding the log.

A broken sink fails on every record; the first failure is logged at once,
later ones at most once per ``interval`` seconds with the number suppressed.

>>> import logging
>>> log = RateLimitedLog(logging.getLogger("demo"), "sink failed", interval=60.0)
>>> log.warning(OSError("disk full"))
True
>>> log.warning(OSError("disk full"))
False
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedLog:
    """Logs ``message: <error>`` at most once per ``interval`` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.message = message
        self.interval = interval
        self.clock = clock
        self._next = float("-inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, error: BaseException) -> bool:
        """Log ``error`` unless one was logged less than ``interval`` ago; True if logged."""
        with self._lock:
            now = self.clock()
            if now < self._next:
                self._suppressed += 1
                return False
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self.interval
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        self.logger.warning("%s: %s: %s%s", self.message, type(error).__name__, error, more)
        return True
