"""JsonlSink: one JSON object per line in a size-rotated file.

Rotation is by size, as ``logging.handlers.RotatingFileHandler`` does it:
``audit.jsonl`` becomes ``audit.jsonl.1``, ``.1`` becomes ``.2`` and so on,
keeping ``backups`` old files. A file that cannot be opened is retried at
the next batch, so a sink recovers once its directory becomes writable.

Writers of one process that name the same file share one sink
(:func:`shared_jsonl_sink`), so their lines never interleave and one of them
rotates the file, not each.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ..jsonsafe import json_safe


class JsonlSink:
    """Appends records to ``path`` as JSON lines, rotating beyond ``max_bytes``.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl"
    >>> sink = JsonlSink(path, max_bytes=1024, backups=1)
    >>> sink.write([{"decision": "allow"}]); sink.close()
    >>> path.read_text()
    '{"decision":"allow"}\\n'
    """

    name = "jsonl"

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._file: IO[bytes] | None = None
        self._size = 0
        self._lock = threading.RLock()
        self._users = 1

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        lines = [encode_line(record) for record in records]
        with self._lock:
            for line in lines:
                file = self._open()
                if self._size and self._size + len(line) > self.max_bytes:
                    self._rotate()
                    file = self._open()
                try:
                    file.write(line)
                except OSError:
                    self._drop_file()
                    raise
                self._size += len(line)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.flush()
                except OSError:
                    self._drop_file()
                    raise

    def close(self) -> None:
        """Close the file once the last writer sharing this sink closes it."""
        with self._lock:
            self._users -= 1
            if self._users > 0:
                self.flush()
                return
            self._drop_file(quietly=False)

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            self._size = self._file.tell()
        return self._file

    def _drop_file(self, *, quietly: bool = True) -> None:
        file, self._file = self._file, None
        if file is not None:
            if not quietly:
                file.close()
                return
            with contextlib.suppress(OSError):
                file.close()

    def _rotate(self) -> None:
        self._drop_file(quietly=False)
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


_shared: dict[Path, JsonlSink] = {}
_shared_lock = threading.Lock()


def shared_jsonl_sink(path: Path, *, max_bytes: int, backups: int) -> JsonlSink:
    """The process's sink for ``path``: one per file, however many writers use it."""
    key = Path(os.path.abspath(path))
    with _shared_lock:
        sink = _shared.get(key)
        if sink is not None and sink._users > 0:
            sink._users += 1
            return sink
        sink = _shared[key] = JsonlSink(key, max_bytes=max_bytes, backups=backups)
        return sink


def _forget_shared_after_fork() -> None:
    global _shared_lock
    _shared.clear()  # the parent's open files are the parent's
    _shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_shared_after_fork)


#: One encoder for every line: json.dumps with these options builds a new one per call.
_STRICT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=str)


def encode_line(record: dict[str, Any]) -> bytes:
    """Compact, strict JSON (non-finite floats become null) and a newline."""
    try:
        text = _STRICT.encode(record)
    except ValueError:
        text = _STRICT.encode(json_safe(record))
    return (text + "\n").encode("utf-8")
