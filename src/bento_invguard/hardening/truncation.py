"""Confidence truncation: coarser scores for less trusted callers.

Every mode keeps the shape of the scores and the argmax of every row, ties
included: the class a caller is told is always the class the model chose
(``np.argmax``, the first of equal maxima), and it is the strict maximum of
the row returned, so any reader's argmax agrees. One vectorised path serves
one row and many alike; :func:`truncate_and_predict` also gives the predicted
classes from the same pass.
"""

from __future__ import annotations

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
    winners = np.argmax(rows, axis=1)
    predicted: list[int] = winners.tolist()
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


def _round(values: np.ndarray, decimals: int) -> np.ndarray:
    """``np.round``, except that a value too large to scale by ``10**decimals``
    (the product overflows) stays as it is: so large a float has no digits to drop."""
    with np.errstate(over="ignore"):
        rounded = np.round(values, decimals)
    overflowed = np.isinf(rounded)
    if overflowed.any():
        rounded[overflowed] = values[overflowed]
    return rounded


def _label(rows: np.ndarray, winners: np.ndarray) -> np.ndarray:
    out = np.zeros(rows.shape, dtype=_float_dtype(rows))
    out[np.arange(rows.shape[0]), winners] = 1
    return out


def _rounded(rows: np.ndarray, decimals: int, winners: np.ndarray) -> np.ndarray:
    out = _round(rows.astype(_float_dtype(rows), copy=False), decimals)
    return _keep_winner_strict(out, winners, decimals, nonnegative=bool((rows >= 0).all()))


def _top_k(rows: np.ndarray, k: int, decimals: int, winners: np.ndarray) -> np.ndarray:
    n, classes = rows.shape
    k = min(k, classes)
    # A stable sort of -scores puts np.argmax's pick (the first maximum) first.
    kept = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    index = np.arange(n)[:, np.newaxis]
    kept_values = _round(rows[index, kept].astype(_float_dtype(rows)), decimals)
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
    top = out[index, winners]
    # A conflict: some score besides the winner's reaches it.
    conflict = (out >= top[:, np.newaxis]).sum(axis=1) > 1
    if not conflict.any():
        return out
    quantum = out.dtype.type(10.0**-decimals)
    others = out.copy()
    others[index, winners] = -np.inf
    lowest = out.dtype.type(0.0) if nonnegative else out.dtype.type(-np.inf)
    top = np.where(conflict & (top - quantum < lowest), lowest + quantum, top)
    cap = np.maximum(np.minimum(top - quantum, np.nextafter(top, -np.inf)), lowest)
    clash = conflict[:, np.newaxis] & (others >= top[:, np.newaxis])
    out = np.where(clash, cap[:, np.newaxis], out)
    out[index, winners] = top
    return out
