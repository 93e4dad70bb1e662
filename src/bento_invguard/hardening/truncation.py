"""Confidence truncation: coarser scores for less trusted callers.

Every mode keeps the shape of the scores and the argmax of every row, ties
included: the class a caller is told is always the class the model chose
(``np.argmax``, the first of equal maxima), and it is the strict maximum of
the row returned, so any reader's argmax agrees.

One row of finite float64 scores (the usual one-row request) takes a path in
plain Python floats that gives exactly what the array path gives (NumPy's
rounding, ``rint(x * 10**d) / 10**d``, and the same IEEE operations in the same
order); it costs about a third as much as the array path, whose every step
is a NumPy call.
"""

from __future__ import annotations

import math

import numpy as np

from ..policy import Tier


def truncate(scores: np.ndarray, mode: str, *, k: int = 1, decimals: int = 2) -> np.ndarray:
    """Truncate a ``(n, classes)`` array (or one ``(classes,)`` row) of scores.

    >>> import numpy as np
    >>> s = np.array([[0.1, 0.7, 0.2]])
    >>> truncate(s, "label").tolist()
    [[0.0, 1.0, 0.0]]
    >>> truncate(s, "top_k", k=2, decimals=1).tolist()
    [[0.0, 0.7, 0.2]]
    """
    if mode == "full":
        return scores
    single = scores.ndim == 1
    rows = scores[np.newaxis, :] if single else scores
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"scores must have shape (n, classes), got {scores.shape}")
    if mode != "label" and rows.shape[0] == 1 and rows.dtype == np.float64 and k >= 1:
        one = _one_row(rows, mode, k, decimals)
        if one is not None:
            return one[0] if single else one
    if mode == "label":
        out = _label(rows)
    elif mode == "rounded":
        out = _rounded(rows, decimals)
    elif mode == "top_k":
        out = _top_k(rows, k, decimals)
    else:
        raise ValueError(f"unknown output mode {mode!r}")
    return out[0] if single else out


def truncate_for_tier(scores: np.ndarray, tier: Tier) -> np.ndarray:
    return truncate(scores, tier.output, k=tier.k, decimals=tier.decimals)


def _float_dtype(rows: np.ndarray) -> np.dtype[np.floating]:
    return rows.dtype if rows.dtype.kind == "f" else np.dtype(np.float64)


def first_maxima(rows: np.ndarray) -> list[int]:
    """``np.argmax(rows, axis=1)`` as a list; one finite row without a NumPy reduction."""
    if rows.shape[0] == 1 and rows.shape[1]:
        values = rows[0].tolist()
        total = sum(values)
        if total - total == 0:  # no NaN (np.argmax would pick the first NaN)
            return [values.index(max(values))]
    return [int(i) for i in np.argmax(rows, axis=1)]


def _label(rows: np.ndarray) -> np.ndarray:
    out = np.zeros(rows.shape, dtype=_float_dtype(rows))
    out[np.arange(rows.shape[0]), first_maxima(rows)] = 1
    return out


def _rounded(rows: np.ndarray, decimals: int) -> np.ndarray:
    winners = np.argmax(rows, axis=1)
    out = np.round(rows.astype(_float_dtype(rows), copy=False), decimals)
    return _keep_winner_strict(out, winners, decimals, nonnegative=bool((rows >= 0).all()))


def _top_k(rows: np.ndarray, k: int, decimals: int) -> np.ndarray:
    n, classes = rows.shape
    k = min(k, classes)
    winners = np.argmax(rows, axis=1)
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


def _one_row(rows: np.ndarray, mode: str, k: int, decimals: int) -> np.ndarray | None:
    """``_top_k`` / ``_rounded`` of one finite float64 row, in Python floats (None: not one)."""
    values: list[float] = rows[0].tolist()
    total = sum(values)
    if total - total != 0:  # a NaN or an infinity (or an overflowing sum): the array path
        return None
    if mode not in ("top_k", "rounded"):
        raise ValueError(f"unknown output mode {mode!r}")
    winner = values.index(max(values))  # np.argmax: the first maximum
    nonnegative = min(values) >= 0
    quantum = 10.0**-decimals
    if mode == "rounded":
        out = _rounded_floats(values, decimals, rows[0])
    else:
        # sorted() is stable with reverse=True: the first maximum comes first, as in _top_k.
        kept = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:k]
        kept_values = _rounded_floats([values[i] for i in kept], decimals, rows[0], kept)
        out = [0.0 if nonnegative else min(kept_values) - quantum] * len(values)
        for i, value in zip(kept, kept_values, strict=True):
            out[i] = value
    top = out[winner]
    if any(value >= top for i, value in enumerate(out) if i != winner):
        lowest = 0.0 if nonnegative else -math.inf
        if top - quantum < lowest:
            top = lowest + quantum
        cap = max(min(top - quantum, math.nextafter(top, -math.inf)), lowest)
        out = [cap if i != winner and value >= top else value for i, value in enumerate(out)]
        out[winner] = top
    return np.array([out], dtype=np.float64)


#: Below 2**52 a float64 may have a fraction; from there on every one is an integer.
_INTEGRAL_FROM = 4503599627370496.0


def _rounded_floats(
    values: list[float], decimals: int, row: np.ndarray, index: list[int] | None = None
) -> list[float]:
    """``np.round(row[index], decimals).tolist()``, computed in Python on ``values``,
    the same floats (``row[index].tolist()``).

    NumPy rounds float64 to ``decimals >= 0`` as ``rint(x * 10**decimals) /
    10**decimals``; so does this, with Python's round-half-even ``round`` for
    ``rint`` and ``copysign`` to keep the sign of a zero. ``10.0**decimals`` is
    exact up to 22, as NumPy's factor is; beyond, or below 0, NumPy itself.
    """
    if not 0 <= decimals <= 22:
        picked = row if index is None else row[index]
        return np.round(picked, decimals).tolist()  # type: ignore[no-any-return]
    factor = 10.0**decimals
    out = []
    for value in values:
        scaled = value * factor
        if abs(scaled) < _INTEGRAL_FROM:
            scaled = math.copysign(float(round(scaled)), scaled)
        out.append(scaled / factor)
    return out
