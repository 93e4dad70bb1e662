"""A plain-text progress bar on stderr (no extra dependency), off when not a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30


class Progress:
    """One status line, redrawn in place at most ``fps`` times a second.

    >>> import io
    >>> out = io.StringIO()
    >>> bar = Progress(100, stream=out, enabled=True, fps=0)
    >>> bar.update(50, "blocked at 50")
    >>> bar.close()
    >>> "50/100" in out.getvalue() and out.getvalue().endswith("\\n")
    True
    """

    def __init__(
        self,
        total: int,
        *,
        label: str = "queries",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        fps: float = 10.0,
    ) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self._interval = 1.0 / fps if fps > 0 else 0.0
        self._last = -float("inf")
        self._drawn = False
        self._width = 0

    def update(self, done: int, note: str = "", *, force: bool = False) -> None:
        """Show ``done`` of ``total`` and a short note; throttled unless ``force``."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        share = min(1.0, max(0.0, done / self.total))
        filled = round(share * _WIDTH)
        line = f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {done}/{self.total} {self.label}"
        if note:
            line += f"  {note}"
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write(f"\r{line}{pad}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the line (only if something was drawn)."""
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
