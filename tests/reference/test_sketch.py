"""The fingerprint: its distances track L2, it is the same everywhere, one path for any rows."""

from __future__ import annotations

import numpy as np

from bento_invguard.reference import Sketch
from bento_invguard.reference.sketch import DIMENSIONS

from ..view.conftest import X_TEST, X_TRAIN


def pair_ratios(rows: np.ndarray, fingerprints: np.ndarray) -> np.ndarray:
    """Fingerprint distance over L2 distance, for every pair of distinct rows."""
    flat = rows.reshape(len(rows), -1).astype(np.float64)
    prints = fingerprints.astype(np.float64)
    upper = np.triu_indices(len(rows), 1)
    l2 = np.linalg.norm(flat[:, None, :] - flat[None, :, :], axis=2)[upper]
    near = np.linalg.norm(prints[:, None, :] - prints[None, :, :], axis=2)[upper]
    keep = l2 > 0
    ratios: np.ndarray = near[keep] / l2[keep]
    return ratios


def test_distances_track_l2_on_the_digits() -> None:
    """On the held-out digits (100,000 pairs), at least 98 % of fingerprint distances are
    within 35 % of the rows' L2 distance, and the median ratio is within 5 % of 1."""
    ratios = pair_ratios(X_TEST, Sketch(64, X_TRAIN.mean(axis=0))(X_TEST))
    within = float(((ratios > 0.65) & (ratios < 1.35)).mean())
    assert within >= 0.98, within
    assert abs(float(np.median(ratios)) - 1.0) <= 0.05


def test_same_fingerprints_in_every_instance() -> None:
    """Two sketches of the same shape and centre (two workers, two replicas) agree bit for bit."""
    center = X_TRAIN.mean(axis=0)
    first, second = Sketch(64, center)(X_TEST), Sketch(64, center)(X_TEST)
    assert first.tobytes() == second.tobytes()
    assert (len(X_TEST), DIMENSIONS) == first.shape
    assert np.float32 == first.dtype


def test_one_path_for_one_row_or_many() -> None:
    """A row's fingerprint is the same whether it comes alone or in a batch."""
    sketch = Sketch(64, X_TRAIN.mean(axis=0))
    batch = sketch(X_TEST[:50])
    alone = np.vstack([sketch(X_TEST[i : i + 1]) for i in range(50)])
    np.testing.assert_allclose(alone, batch, rtol=1e-5, atol=1e-4)


def test_the_centre_cancels_in_distances() -> None:
    """Centring moves every fingerprint alike: distances do not depend on it."""
    centred, plain = Sketch(64, X_TRAIN.mean(axis=0)), Sketch(64)
    a, b = X_TEST[:1], X_TEST[1:2]
    expected = float(np.linalg.norm(plain(a) - plain(b)))
    assert abs(expected - float(np.linalg.norm(centred(a) - centred(b)))) < 1e-3 * expected


def test_an_image_row_of_224x224x3_is_folded() -> None:
    """An image row works as is (n, 224, 224, 3): 24 numbers, and distances still track L2
    (66 pairs: most within 35 %)."""
    images = np.random.default_rng(0).random((12, 224, 224, 3)).astype(np.float32)
    sketch = Sketch(224 * 224 * 3)
    prints = sketch(images)
    assert (12, DIMENSIONS) == prints.shape
    assert np.isfinite(prints).all()
    ratios = pair_ratios(images, prints)
    assert float(((ratios > 0.65) & (ratios < 1.35)).mean()) >= 0.9, ratios
    assert abs(float(np.median(ratios)) - 1.0) <= 0.1
    nudged = images[:1].copy()
    nudged[0, 100, 100] += 0.01  # three values moved by 0.01: L2 0.017
    assert float(np.linalg.norm(sketch(nudged) - prints[:1])) < 0.05
