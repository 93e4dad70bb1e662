"""Where an extraction attack's query rows come from: natural, synthetic or out-of-domain.

- ``natural``: the attacker's public rows (shuffled), then blends of three of
  them once the pool is used up (uniform draws without a pool);
- ``uniform``: rows drawn uniformly in the input box;
- ``blend``: convex mixes of 2-3 public rows (Dirichlet weights);
- ``jacobian``: Jacobian-based dataset augmentation (Papernot et al. 2017),
  driven by the copy in :mod:`~bento_invguard.redteam.extraction`; here only
  its step, :func:`jacobian_step`;
- ``knockoff``: out-of-domain natural images (KnockoffNets, Orekondy et al.
  2019): random crops of the two photographs that ship inside scikit-learn,
  in grey, resized to the input's square image and scaled to its range.

Every function draws from the generator it is given: the same seed gives the
same rows.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from .common import InputSpace
from .scoring import SoftmaxRegression

Strategy = Literal["natural", "uniform", "blend", "jacobian", "knockoff"]
STRATEGIES: tuple[Strategy, ...] = ("natural", "uniform", "blend", "jacobian", "knockoff")


def uniform_rows(space: InputSpace, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows uniform in the box ``[space.lower, space.upper]``."""
    return space.clip(rng.uniform(space.lower, space.upper, size=(n, space.features)))


def blend_rows(
    space: InputSpace, pool: np.ndarray, n: int, rng: np.random.Generator, parts: int = 3
) -> np.ndarray:
    """``n`` convex mixes of 2..``parts`` pool rows each (Dirichlet weights)."""
    flat = _flat(pool)
    weights = rng.dirichlet(np.ones(parts), size=n)
    if parts > 2:
        # Some mixes of two: drop the last part of about half the rows and renormalise.
        two = rng.random(n) < 0.5
        weights[two, -1] = 0.0
        weights /= weights.sum(axis=1, keepdims=True)
    idx = rng.integers(0, len(flat), size=(n, parts))
    return space.clip(np.einsum("nk,nkf->nf", weights, flat[idx]))


def natural_rows(
    space: InputSpace, pool: np.ndarray | None, n: int, rng: np.random.Generator, parts: int = 3
) -> np.ndarray:
    """The pool (shuffled), then mixes of pool rows; uniform draws without a pool."""
    if pool is None or len(pool) == 0:
        return uniform_rows(space, n, rng)
    flat = _flat(pool)
    first = flat[rng.permutation(len(flat))][:n]
    extra = n - len(first)
    if extra <= 0:
        return first
    idx = rng.integers(0, len(flat), size=(extra, parts))
    weights = rng.dirichlet(np.ones(parts), size=extra)
    return np.vstack([first, space.clip(np.einsum("nk,nkf->nf", weights, flat[idx]))])


def jacobian_step(
    copy: SoftmaxRegression, rows: np.ndarray, labels: np.ndarray, space: InputSpace, step: float
) -> np.ndarray:
    """Papernot's augmentation: each row moved by ``step`` along the sign of the copy's gradient.

    The gradient is the copy's, analytic: the logit of class ``c`` of a
    softmax regression is linear in the input, with gradient
    ``coef[:, c] / scale``. Each row moves towards the label the endpoint
    gave it, so new rows land near the copy's decision boundaries.
    """
    gradient = (copy.coef[:, labels] / copy.scale[:, np.newaxis]).T
    return space.clip(rows + step * np.sign(gradient))


def knockoff_rows(
    space: InputSpace, n: int, rng: np.random.Generator, *, low: float, high: float
) -> np.ndarray:
    """``n`` out-of-domain rows: grey crops of natural photographs, scaled to ``[low, high]``.

    Square inputs (64 features: 8x8) get square crops; other widths get
    strips of one pixel row. Needs scikit-learn (its bundled photographs)
    and Pillow.
    """
    photos = _photographs()
    side = math.isqrt(space.features)
    shape = (side, side) if side * side == space.features else (1, space.features)
    rows = np.empty((n, space.features))
    for i in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        rows[i] = _crop(photo, shape, rng).ravel()
    return space.clip(low + (high - low) * rows)


def _crop(photo: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``photo`` (grey, 0..1), resized to ``shape`` (height, width)."""
    from PIL import Image

    height, width = photo.shape
    aspect = shape[1] / shape[0]
    h = int(rng.integers(max(4, height // 16), height // 2 + 1))
    w = min(width, max(1, round(h * aspect)))
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    patch = Image.fromarray(np.uint8(np.round(photo[top : top + h, left : left + w] * 255)))
    resized = np.asarray(patch.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)) / 255.0
    return resized if rng.random() < 0.5 else resized[:, ::-1]


def _photographs() -> list[np.ndarray]:
    """scikit-learn's two sample photographs in grey, values in 0..1."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:  # pragma: no cover - the message is the point
        raise RuntimeError(
            "the knockoff strategy needs scikit-learn's bundled photographs: "
            "pip install 'bento-invguard[demo]' (scikit-learn and Pillow)"
        ) from None
    images = load_sample_images().images
    return [np.asarray(img, dtype=np.float64).mean(axis=2) / 255.0 for img in images]


def _flat(pool: np.ndarray) -> np.ndarray:
    return np.asarray(pool, dtype=np.float64).reshape(len(pool), -1)
