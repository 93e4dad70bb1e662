"""What every audit sink provides: write a batch of records, flush, close."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class AuditSink(Protocol):
    """A destination for audit records. Called from the writer thread only.

    ``write`` may raise: the writer counts the failure, reports it (rate
    limited) and carries on; a request never sees it.
    """

    name: str

    def write(self, records: Sequence[dict[str, Any]]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
