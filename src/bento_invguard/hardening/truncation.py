"""Confidence truncation: coarser scores for less trusted callers.

Every mode keeps the shape of the scores and the argmax of every row, ties
included: the class a caller is told is always the class the model chose
(``np.argmax``, the first of equal maxima), and it is the strict maximum of
the row returned, so any reader's argmax agrees.

One row of finite float64 scores (the usual one-row request) takes a path in
plain Python floats that gives exactly what the array path gives (NumPy's
rounding, ``rint(x * 10**d) / 10**d``, and the same IEEE operations in the same
order). The array path's every step is a NumPy call, and in a served worker,
where each call starts with cold caches, a NumPy call costs several times its
hot-loop price (docs/benchmarks.md). :func:`truncate_and_predict` also gives
the predicted classes from the same pass over the row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..policy import Tier

MODES = ("label", "top_k", "rounded", "full")


def truncate(scores: np.ndarray, mode: str, *, k: int = 1, decimals: int = 2) -> np.ndarray:
    """Truncate a ``(n, classes)`` array (or one ``(classes,)`` row) of scores.

    >>> import numpy as np
    >>> s = np.array([[0.1, 0.7, 0.2]])
    >>> truncate(s, "label").tolist()
    [[0.0, 1.0, 0.0]]
    >>> truncate(s, "top_k", k=2, decimals=1).tolist()
    [[0.0, 0.7, 0.2]]
    """
    return truncate_and_predict(scores, mode, k=k, decimals=decimals)[0]


def truncate_for_tier(scores: np.ndarray, tier: Tier) -> tuple[np.ndarray, list[int]]:
    """:func:`truncate_and_predict` with the tier's output mode."""
    return truncate_and_predict(scores, tier.output, k=tier.k, decimals=tier.decimals)


def truncate_and_predict(
    scores: np.ndarray, mode: str, *, k: int = 1, decimals: int = 2
) -> tuple[np.ndarray, list[int]]:
    """:func:`truncate`, and the predicted class of every row (``np.argmax``'s).

    >>> import numpy as np
    >>> out, predicted = truncate_and_predict(np.array([[0.1, 0.7, 0.2]]), "label")
    >>> predicted
    [1]
    """
    single = scores.ndim == 1
    rows = scores[np.newaxis, :] if single else scores
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"scores must have shape (n, classes), got {scores.shape}")
    if mode not in MODES:
        raise ValueError(f"unknown output mode {mode!r}")
    if rows.shape[0] == 1 and rows.dtype == np.float64:
        values: list[float] = rows.tolist()[0]
        total = sum(values)
        if total - total == 0:  # no NaN, no infinity (nor an overflowing sum)
            winner = values.index(max(values))  # np.argmax: the first maximum
            if mode == "full":
                return scores, [winner]
            out = _one_row(values, winner, mode, k, decimals)
            if out is not None:
                return np.array(out if single else [out], dtype=np.float64), [winner]
    winners = np.argmax(rows, axis=1)
    predicted = [int(i) for i in winners]
    if mode == "full":
        return scores, predicted
    if mode == "label":
        truncated = _label(rows, winners)
    elif mode == "rounded":
        truncated = _rounded(rows, decimals, winners)
    else:
        truncated = _top_k(rows, k, decimals, winners)
    return (truncated[0] if single else truncated), predicted


def _float_dtype(rows: np.ndarray) -> np.dtype[np.floating]:
    return rows.dtype if rows.dtype.kind == "f" else np.dtype(np.float64)


def _label(rows: np.ndarray, winners: np.ndarray) -> np.ndarray:
    out = np.zeros(rows.shape, dtype=_float_dtype(rows))
    out[np.arange(rows.shape[0]), winners] = 1
    return out


def _rounded(rows: np.ndarray, decimals: int, winners: np.ndarray) -> np.ndarray:
    out = np.round(rows.astype(_float_dtype(rows), copy=False), decimals)
    return _keep_winner_strict(out, winners, decimals, nonnegative=bool((rows >= 0).all()))


def _top_k(rows: np.ndarray, k: int, decimals: int, winners: np.ndarray) -> np.ndarray:
    n, classes = rows.shape
    k = min(k, classes)
    # A stable sort of -scores puts np.argmax's pick (the first maximum) first.
    kept = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    index = np.arange(n)[:, np.newaxis]
    kept_values = np.round(rows[index, kept].astype(_float_dtype(rows)), decimals)
    nonnegative = bool((rows >= 0).all())
    if nonnegative:
        out = np.zeros(rows.shape, dtype=kept_values.dtype)
    else:
        # Scores such as logits: dropped classes sit just below the lowest kept one.
        quantum = kept_values.dtype.type(10.0**-decimals)
        filler = kept_values.min(axis=1, keepdims=True) - quantum
        out = np.broadcast_to(filler, rows.shape).copy()
    out[index, kept] = kept_values
    return _keep_winner_strict(out, winners, decimals, nonnegative=nonnegative)


def _keep_winner_strict(
    out: np.ndarray, winners: np.ndarray, decimals: int, *, nonnegative: bool
) -> np.ndarray:
    """Make each row's original winner its strict maximum after rounding.

    Rounding can tie (or, with earlier ties, reorder) the winner and a runner-up.
    The runner-ups give way by one rounding quantum; the winner keeps its value
    unless that would push non-negative scores below zero, then it is raised.
    """
    index = np.arange(out.shape[0])
    quantum = out.dtype.type(10.0**-decimals)
    top = out[index, winners]
    others = out.copy()
    others[index, winners] = -np.inf
    conflict = others.max(axis=1) >= top
    if not conflict.any():
        return out
    lowest = out.dtype.type(0.0) if nonnegative else out.dtype.type(-np.inf)
    top = np.where(conflict & (top - quantum < lowest), lowest + quantum, top)
    cap = np.maximum(np.minimum(top - quantum, np.nextafter(top, -np.inf)), lowest)
    clash = conflict[:, np.newaxis] & (others >= top[:, np.newaxis])
    out = np.where(clash, cap[:, np.newaxis], out)
    out[index, winners] = top
    return out


def _one_row(
    values: list[float], winner: int, mode: str, k: int, decimals: int
) -> list[float] | None:
    """The array path's answer for one row of finite floats, in Python floats.

    ``winner`` is the row's first maximum. None when the array path must
    decide (decimals NumPy rounds otherwise, or no class kept).
    """
    n = len(values)
    if mode == "label":
        out = [0.0] * n
        out[winner] = 1.0
        return out
    if not 0 <= decimals <= _EXACT_DECIMALS or k < 1:
        return None
    if mode == "rounded":
        kept: Sequence[int] = range(n)
    else:  # sorted() is stable with reverse=True: the first maximum first, as in _top_k
        kept = sorted(range(n), key=values.__getitem__, reverse=True)[:k]
    rounded = _rounded_floats([values[i] for i in kept], decimals)
    nonnegative = min(values) >= 0
    quantum = 10.0**-decimals
    # Dropped classes: 0, or for scores such as logits just below the lowest kept one.
    out = [0.0 if nonnegative else min(rounded) - quantum] * n
    for i, value in zip(kept, rounded, strict=True):
        out[i] = value
    top = out[winner]
    for i, value in enumerate(out):
        if value >= top and i != winner:
            break
    else:  # the winner is already the strict maximum
        return out
    # As _keep_winner_strict: the runner-ups give way by a quantum, the winner stays.
    lowest = 0.0 if nonnegative else -math.inf
    if top - quantum < lowest:
        top = lowest + quantum
    cap = max(min(top - quantum, math.nextafter(top, -math.inf)), lowest)
    out = [cap if i != winner and value >= top else value for i, value in enumerate(out)]
    out[winner] = top
    return out


#: Below 2**52 a float64 may have a fraction; from there on every one is an integer.
_INTEGRAL_FROM = 4503599627370496.0


#: ``10.0**d`` is exact (as NumPy's rounding factor is) up to d = 22.
_EXACT_DECIMALS = 22


def _rounded_floats(values: list[float], decimals: int) -> list[float]:
    """``np.round(np.array(values), decimals).tolist()``, in Python floats.

    NumPy rounds float64 to ``decimals >= 0`` as ``rint(x * 10**decimals) /
    10**decimals``; so does this, with Python's round-half-even ``round`` for
    ``rint`` and ``copysign`` to keep the sign of a zero. For ``decimals``
    from 0 to 22 only (``10.0**decimals`` exact, as NumPy's factor is).
    """
    factor = 10.0**decimals
    out = []
    for value in values:
        scaled = value * factor
        if abs(scaled) < _INTEGRAL_FROM:
            scaled = math.copysign(float(round(scaled)), scaled)
        out.append(scaled / factor)
    return out
