"""The hook on the answer path: watermark the rows a tier's keyed hash chooses.

The hardener calls :meth:`Watermarks.apply` with the model's scores, after
the model and before truncation; the truncated answer then shows the
watermark label as top-1 in every output mode (label, top_k, rounded, full).
Rows not chosen are returned unchanged, so their top-1 stands.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..bentoml_bridge import bentoml_home, worker_index
from ..context import QueryContext
from ..errors import GuardConfigError
from ..policy import Policy
from ..policy.watermark import DEFAULT_EVIDENCE_PATH, WatermarkPolicy
from .evidence import Evidence, EvidenceWriter
from .keyed import is_chosen, mark_label, marked_row, row_digest

CONTROL = "watermark"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_secret(raw: str, tier: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The secret with ``${VAR}`` expanded; an unset or empty result fails at startup."""
    environ = os.environ if environ is None else environ

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise GuardConfigError(
                f"tiers.{tier}.watermark.secret: environment variable {name} is not set"
            )
        return str(environ[name])

    secret = _VAR.sub(expand, raw)
    if not secret.strip():
        raise GuardConfigError(f"tiers.{tier}.watermark.secret: the secret is empty")
    return secret.encode("utf-8")


def evidence_path(spec: WatermarkPolicy, tier: str, base_dir: Path) -> Path:
    """The evidence file: ``${VAR}`` expanded, ``{tier}`` and ``{worker}`` filled in."""
    raw = str(spec.evidence) if spec.evidence is not None else DEFAULT_EVIDENCE_PATH
    raw = raw.replace("${BENTOML_HOME}", bentoml_home())
    raw = os.path.expandvars(raw).replace("{tier}", tier)
    path = Path(raw.replace("{worker}", str(worker_index()))).expanduser()
    return path if path.is_absolute() else base_dir / path


class Watermark:
    """One tier's watermark: which rows, which label, and the evidence they leave.

    >>> import numpy as np
    >>> mark = Watermark(b"k", rate=0.05, tier="t", writer=None)
    >>> rows = np.arange(2000.0).reshape(1000, 2)
    >>> chosen = [i for i in range(1000) if mark.label_for(rows[i], 0, 3) is not None]
    >>> 25 < len(chosen) < 80
    True
    """

    def __init__(
        self,
        secret: bytes,
        *,
        rate: float,
        tier: str,
        writer: EvidenceWriter | None,
        model_version: Callable[[], str] = lambda: "default",
    ) -> None:
        self.secret = secret
        self.rate = rate
        self.tier = tier
        self.writer = writer
        self.model_version = model_version

    def label_for(self, row: np.ndarray, top: int, classes: int) -> int | None:
        """The watermark label of ``row`` (whose model top-1 is ``top``), or None."""
        digest = row_digest(self.secret, row)
        if not is_chosen(digest, self.rate):
            return None
        return mark_label(digest, top, classes)

    def apply(
        self,
        ctx: QueryContext,
        scores: np.ndarray,
        skip: Mapping[int, int] | None = None,
    ) -> np.ndarray:
        """``scores`` with the chosen rows of ``ctx.input`` watermarked (a copy if any is).

        Rows in ``skip`` (answered otherwise, e.g. silently) are left alone. The
        evidence is written once per query, however often the answer is hardened.
        """
        rows = ctx.input
        if rows is None or scores.ndim != 2 or len(rows) != len(scores):
            return scores
        classes = int(scores.shape[1])
        if classes < 2:
            return scores
        marked: list[Evidence] = []
        out = scores
        for i, row in enumerate(np.asarray(rows)):
            if skip and i in skip:
                continue
            top = int(np.argmax(scores[i]))
            label = self.label_for(row, top, classes)
            if label is None:
                continue
            new = marked_row(scores[i], label)
            if new is None:
                continue
            if out is scores:
                out = np.array(scores, dtype=np.float64)
            out[i] = new
            marked.append(self._evidence(ctx, row, label, top, classes))
        if marked and not any(d.control == CONTROL for d in ctx.decisions):
            ctx.decide(CONTROL, "marked", f"{len(marked)} rows")
            if self.writer is not None:
                self.writer.write(marked)
        return out

    def _evidence(
        self, ctx: QueryContext, row: np.ndarray, label: int, top: int, classes: int
    ) -> Evidence:
        return Evidence(
            input=np.array(row, dtype=np.float64),
            label=label,
            top=top,
            classes=classes,
            principal=ctx.principal or f"@{ctx.client}",
            model_version=self.model_version(),
            tier=self.tier,
        )


class Watermarks:
    """The watermark of every tier that has one; the hardener's hook.

    ``apply(ctx, scores, skip)`` watermarks by the caller's tier
    (``ctx.tier_name``), so an answer degraded to labels keeps its mark.
    """

    def __init__(self, by_tier: Mapping[str, Watermark]) -> None:
        self.by_tier = dict(by_tier)

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        model_version: Callable[[], str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Watermarks | None:
        """The policy's watermarks; None when no tier has one (the default)."""
        by_tier: dict[str, Watermark] = {}
        for name, tier in policy.tiers.items():
            spec = tier.watermark
            if spec is None:
                continue
            secret = expand_secret(spec.secret.get_secret_value(), name, environ)
            writer = EvidenceWriter(evidence_path(spec, name, policy.base_dir))
            by_tier[name] = Watermark(
                secret,
                rate=spec.rate,
                tier=name,
                writer=writer,
                model_version=model_version or (lambda: "default"),
            )
        return cls(by_tier) if by_tier else None

    def apply(
        self, ctx: QueryContext, scores: np.ndarray, skip: Mapping[int, int] | None = None
    ) -> np.ndarray:
        mark = self.by_tier.get(ctx.tier_name or "")
        return scores if mark is None else mark.apply(ctx, scores, skip)


def watermark_hook(
    policy: Policy, model_version: Callable[[], str] | None = None
) -> Callable[[QueryContext, np.ndarray, Mapping[int, int] | None], np.ndarray] | None:
    """The hardener's marker for ``policy`` (``OutputHardener(marker=...)``), or None.

    >>> from bento_invguard import Policy
    >>> watermark_hook(Policy(tiers={"public": {}})) is None
    True
    """
    marks = Watermarks.from_policy(policy, model_version)
    return None if marks is None else marks.apply
