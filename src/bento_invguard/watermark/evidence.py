"""The evidence file: one JSON line per watermarked input, for ``invguard verify-copy``.

It holds raw inputs (this is the one place the guard keeps them without
``audit.capture: full``), the caller's id, the model version and the label
the caller was answered with. No pickle: the rows are JSON numbers, which
read back as the same float64 values.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .keyed import canonical_bytes


@dataclass(frozen=True)
class Evidence:
    """One watermarked input and how it was answered."""

    input: np.ndarray
    label: int
    top: int
    classes: int
    principal: str
    model_version: str
    tier: str
    time: str = ""

    @property
    def digest(self) -> str:
        """SHA-256 of the input's canonical bytes (no secret): the same input, once."""
        return hashlib.sha256(canonical_bytes(self.input)).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "tier": self.tier,
            "principal": self.principal,
            "model_version": self.model_version,
            "classes": self.classes,
            "top": self.top,
            "label": self.label,
            "shape": list(self.input.shape),
            "input": np.asarray(self.input, dtype=np.float64).ravel().tolist(),
            "input_sha256": self.digest,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        values = np.asarray(data["input"], dtype=np.float64)
        return cls(
            input=values.reshape([int(d) for d in data["shape"]]),
            label=int(data["label"]),
            top=int(data["top"]),
            classes=int(data["classes"]),
            principal=str(data.get("principal", "")),
            model_version=str(data.get("model_version", "")),
            tier=str(data.get("tier", "")),
            time=str(data.get("time", "")),
        )


class EvidenceWriter:
    """Appends evidence lines to one file (created with mode 0600: it holds raw inputs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, records: Iterable[Evidence]) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        lines = "".join(
            json.dumps({**r.as_dict(), "time": r.time or now}, separators=(",", ":")) + "\n"
            for r in records
        )
        if not lines:
            return
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(lines)


def read_evidence(paths: Iterable[Path]) -> Iterator[Evidence]:
    """Every distinct input of the files, in file order (a repeated input counts once).

    A line that is not valid evidence raises ``ValueError`` naming file and line.
    """
    seen: set[str] = set()
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = Evidence.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{number}: not a watermark record: {exc}") from None
                if record.digest not in seen:
                    seen.add(record.digest)
                    yield record
