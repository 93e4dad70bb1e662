"""How many answers the watermark changes, and what a rate buys: shares with confidence
intervals, and the trade-off between the changed share and identifying a copy.

Each chosen input is answered with a label other than the model's top-1, so
the share of a tier's answers that change is the share of its inputs the
keyed hash chooses: a binomial draw around ``rate``. Two consequences:

- a finite stream's share scatters around ``rate``; with ``rate = 0.005`` it
  is above 0.5 % for about half of all streams. :func:`changed_share` counts
  it over a long stream of the tier's answers, with a Clopper-Pearson
  interval;
- a copy that reproduces every kept answer gets ``p = p0 ** kept``
  (``p0 = 1 / (classes - 1)``), so ``p <= alpha`` needs at least
  :func:`needed_marks` kept inputs among the stolen answers (7 for 10
  classes and ``alpha = 1e-6``). :func:`tradeoff` gives, per rate and number
  of stolen answers, the chance of that (binomial), the same share measured
  over many secrets with a 1-nearest-neighbour copy (it memorises every
  answer), and the chance that a stream's changed share exceeds 0.5 %.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binom, binomtest

from bento_invguard.context import QueryContext
from bento_invguard.watermark import (
    Evidence,
    EvidenceWriter,
    Watermark,
    read_evidence,
    verify_copy,
)

from .datasets import Dataset

RATES = (0.002, 0.003, 0.004, 0.005, 0.01)
ANSWERS = (2000, 5000)
SECRETS = 40
STREAM = 50_000
CEILING = 0.005
ALPHA = 1e-6


def interval(changed: int, total: int) -> tuple[float, float]:
    """Clopper-Pearson 95 % interval of the share ``changed / total``.

    >>> low, high = interval(5, 1000)
    >>> round(low, 4), round(high, 4)
    (0.0016, 0.0116)
    """
    ci = binomtest(changed, total).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def needed_marks(classes: int, alpha: float = ALPHA) -> int:
    """Kept inputs a perfect copy needs for ``p <= alpha``: ``p0 ** k <= alpha``.

    >>> needed_marks(10)
    7
    """
    return math.ceil(math.log(alpha) / math.log(1.0 / (classes - 1)) - 1e-12)


def identify_odds(rate: float, answers: int, classes: int, alpha: float = ALPHA) -> float:
    """Chance that ``answers`` stolen answers hold enough kept inputs for ``p <= alpha``."""
    return float(binom.sf(needed_marks(classes, alpha) - 1, answers, rate))


def exceed_odds(rate: float, answers: int, ceiling: float = CEILING) -> float:
    """Chance that the changed share of ``answers`` answers is above ``ceiling``."""
    return float(binom.sf(math.floor(ceiling * answers + 1e-9), answers, rate))


def answer(
    d: Dataset, rows: np.ndarray, secret: bytes, rate: float, principal: str, folder: Path
) -> tuple[np.ndarray, list[Evidence]]:
    """The watermarked tier's top-1 answers to ``rows`` (``Watermark.apply`` on the served
    model's scores), and the evidence it kept."""
    path = folder / f"{principal}.jsonl"
    path.unlink(missing_ok=True)
    mark = Watermark(secret, rate=rate, tier="public", writer=EvidenceWriter(path))
    labels = []
    for i in range(0, len(rows), 5000):
        ctx = QueryContext(endpoint="predict", principal=principal, tier_name="public")
        ctx.input = rows[i : i + 5000]
        labels.append(mark.apply(ctx, d.model.predict_proba(ctx.input)).argmax(axis=1))
    kept = list(read_evidence([path])) if path.exists() else []
    return np.concatenate(labels), kept


def changed_share(d: Dataset, rows: np.ndarray, answers: np.ndarray) -> dict[str, Any]:
    """Answers that differ from the served model's top-1, with the 95 % interval."""
    changed = int((answers != d.model.predict_proba(rows).argmax(axis=1)).sum())
    low, high = interval(changed, len(rows))
    return {
        "answers": len(rows),
        "changed": changed,
        "share": changed / len(rows),
        "ci95": [round(low, 5), round(high, 5)],
    }


def tradeoff(
    d: Dataset,
    queries: np.ndarray,
    *,
    rates: Sequence[float] = RATES,
    answers: Sequence[int] = ANSWERS,
    secrets: int = SECRETS,
    stream: int = STREAM,
) -> list[dict[str, Any]]:
    """One row per (rate, stolen answers): the changed share over ``stream`` answers, the
    chance a perfect copy is identified, and that share measured over ``secrets`` secrets."""
    from sklearn.neighbors import KNeighborsClassifier

    out = []
    long = _long_stream(d, queries, stream)
    with tempfile.TemporaryDirectory(prefix="invguard-wm-share-") as tmp:
        folder = Path(tmp)
        for rate in rates:
            stolen: dict[int, list[tuple[int, bool]]] = {n: [] for n in answers}
            for s in range(secrets):
                secret = f"secret-{s}".encode()
                if s == 0:
                    share = changed_share(d, long, answer(d, long, secret, rate, "long", folder)[0])
                for n in answers:
                    labels, kept = answer(d, queries[:n], secret, rate, "thief", folder)
                    knn = KNeighborsClassifier(n_neighbors=1).fit(queries[:n], labels)
                    verdict = verify_copy(kept, knn.predict, alpha=ALPHA)
                    stolen[n].append((len(kept), verdict.is_copy))
            for n in answers:
                kept_counts = [k for k, _ in stolen[n]]
                identified = sum(hit for _, hit in stolen[n])
                out.append(
                    {
                        "data": d.name,
                        "rate": rate,
                        "answers": n,
                        "stream_share": share,
                        "kept_median": float(np.median(kept_counts)),
                        "kept_min": int(min(kept_counts)),
                        "identify_odds": round(identify_odds(rate, n, d.classes), 4),
                        "identified": identified,
                        "secrets": secrets,
                        "exceed_odds": round(exceed_odds(rate, n), 4),
                    }
                )
    return out


def _long_stream(d: Dataset, queries: np.ndarray, n: int) -> np.ndarray:
    """``n`` natural answers' inputs: ``queries``, then jittered twins of them."""
    rng = np.random.default_rng(11)
    if len(queries) >= n:
        return queries[:n]
    extra = queries[rng.integers(0, len(queries), n - len(queries))]
    noise = rng.normal(0.0, 0.03 * (d.high - d.low), extra.shape)
    return np.vstack([queries, np.clip(extra + noise, d.low, d.high)])


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The trade-off table."""
    head = (
        "| data set | rate | answers changed (95 % CI) | stolen answers | kept inputs "
        "(median, min) | P(copy identified), binomial | identified, measured "
        "| P(changed share > 0.5 %) |"
    )
    lines = [head, "|" + " --- |" * 8]
    for r in rows:
        s = r["stream_share"]
        lo, hi = s["ci95"]
        lines.append(
            f"| {r['data']} | {r['rate']:.4f} | {100 * s['share']:.3f} % "
            f"({100 * lo:.3f}-{100 * hi:.3f}) of {s['answers']:,} | {r['answers']:,} "
            f"| {r['kept_median']:.0f}, {r['kept_min']} | {100 * r['identify_odds']:.1f} % "
            f"| {r['identified']} of {r['secrets']} secrets "
            f"| {100 * r['exceed_odds']:.1f} % |"
        )
    return "\n".join(lines)
