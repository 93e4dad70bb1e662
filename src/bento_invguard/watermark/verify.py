"""Is a suspect model a copy? Count how often it answers the kept inputs with their
watermark labels, and how unlikely that is for a model that never saw them.

The null hypothesis: the suspect was made without our answers. A watermark
label is drawn by a keyed hash, uniformly among the ``classes - 1`` classes
other than our model's top-1, independently of the input's content; a model
that never saw it can match it only by chance, with probability at most
``p0 = 1 / (classes - 1)`` per input (exactly that if it never answers our
top-1, less otherwise), independently across inputs. The p-value is the
binomial tail ``P[X >= matches]`` for ``X ~ Binomial(tested, p0)``: an upper
bound, whatever the suspect's errors look like.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .evidence import Evidence

#: The default significance level of ``invguard verify-copy``.
DEFAULT_ALPHA = 1e-6
#: The default number of kept inputs sent to the suspect.
DEFAULT_MAX_QUERIES = 500
#: Rows per call to the suspect.
BATCH_ROWS = 50

#: A suspect: rows (n, ...) -> scores (n, classes) or labels (n,).
Predictor = Callable[[np.ndarray], np.ndarray]


def binomial_tail(matches: int, tested: int, p0: float) -> float:
    """``P[X >= matches]`` for ``X ~ Binomial(tested, p0)``, summed in log space.

    >>> round(binomial_tail(1, 1, 0.25), 6), binomial_tail(0, 5, 0.1)
    (0.25, 1.0)
    >>> binomial_tail(10, 10, 1 / 9) < 1e-9
    True
    """
    if matches <= 0:
        return 1.0
    if matches > tested:
        return 0.0
    if p0 <= 0.0:
        return 0.0
    if p0 >= 1.0:
        return 1.0
    log_p, log_q = math.log(p0), math.log1p(-p0)
    terms = [
        math.lgamma(tested + 1)
        - math.lgamma(k + 1)
        - math.lgamma(tested - k + 1)
        + k * log_p
        + (tested - k) * log_q
        for k in range(matches, tested + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


@dataclass(frozen=True)
class Verdict:
    """What the suspect answered on the kept inputs, and what it means."""

    tested: int
    matches: int
    top_matches: int
    classes: int
    p0: float
    p_value: float
    alpha: float
    principals: dict[str, int] = field(default_factory=dict)

    @property
    def is_copy(self) -> bool:
        """True when an independent model matches this often with probability <= alpha."""
        return self.tested > 0 and self.p_value <= self.alpha

    def as_dict(self) -> dict[str, object]:
        return {
            "verdict": "copy" if self.is_copy else "not shown",
            "tested": self.tested,
            "matches": self.matches,
            "match_rate": round(self.matches / self.tested, 4) if self.tested else 0.0,
            "top1_matches": self.top_matches,
            "classes": self.classes,
            "p0": self.p0,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "principals": self.principals,
        }


def predicted_labels(answers: np.ndarray, rows: int) -> np.ndarray:
    """The suspect's class per row, from scores ``(n, classes)`` or labels ``(n,)``."""
    answers = np.asarray(answers)
    if answers.ndim == 2 and answers.shape[0] == rows:
        labels: np.ndarray = np.argmax(answers, axis=1)
        return labels
    if answers.ndim == 1 and answers.shape[0] == rows:
        return np.asarray(answers, dtype=np.int64)
    raise ValueError(
        f"the suspect answered shape {answers.shape} for {rows} rows; expected "
        "(rows, classes) scores or (rows,) labels"
    )


def verify_copy(
    evidence: Iterable[Evidence],
    predict: Predictor,
    *,
    max_queries: int = DEFAULT_MAX_QUERIES,
    alpha: float = DEFAULT_ALPHA,
) -> Verdict:
    """Query ``predict`` with up to ``max_queries`` kept inputs and test the matches.

    >>> import numpy as np
    >>> kept = [Evidence(np.array([float(i)]), label=1, top=0, classes=10,
    ...                  principal="eve", model_version="v1", tier="public")
    ...         for i in range(12)]
    >>> copy = lambda rows: np.ones(len(rows), dtype=int)
    >>> verdict = verify_copy(kept, copy)
    >>> verdict.matches, verdict.is_copy
    (12, True)
    """
    records: list[Evidence] = []
    for record in evidence:
        if len(records) >= max_queries:
            break
        records.append(record)
    if not records:
        return Verdict(0, 0, 0, 0, 1.0, 1.0, alpha)
    classes = max(r.classes for r in records)
    if classes < 2:
        raise ValueError("the kept inputs name fewer than 2 classes")
    labels = _ask(predict, records)
    marks = np.array([r.label for r in records])
    tops = np.array([r.top for r in records])
    matched = labels == marks
    principals: dict[str, int] = {}
    for record, hit in zip(records, matched.tolist(), strict=True):
        if hit:
            principals[record.principal] = principals.get(record.principal, 0) + 1
    p0 = 1.0 / (classes - 1)
    matches = int(matched.sum())
    return Verdict(
        tested=len(records),
        matches=matches,
        top_matches=int((labels == tops).sum()),
        classes=classes,
        p0=p0,
        p_value=binomial_tail(matches, len(records), p0),
        alpha=alpha,
        principals=principals,
    )


def _ask(predict: Predictor, records: Sequence[Evidence]) -> np.ndarray:
    """The suspect's labels, asked in batches of rows of one shape."""
    out = np.empty(len(records), dtype=np.int64)
    start = 0
    while start < len(records):
        shape = records[start].input.shape
        end = start
        while end < len(records) and end - start < BATCH_ROWS and records[end].input.shape == shape:
            end += 1
        rows = np.stack([r.input for r in records[start:end]])
        out[start:end] = predicted_labels(predict(rows), end - start)
        start = end
    return out
