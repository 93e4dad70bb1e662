"""A query's fingerprint for the shared view: a short vector whose distances track L2.

A row is centred, folded with random signs onto at most ``FOLD`` values (a
CountSketch, which keeps squared distances in expectation) and projected on
``DIMENSIONS`` random Gaussian directions scaled by ``1/sqrt(DIMENSIONS)``
(Johnson-Lindenstrauss): the distance of two fingerprints is, within about
15 %, the L2 distance of the two rows, in the input's own units. Small steps
stay small and natural inputs stay far apart, which an angle hash of 64 bits
blurs. One vectorised path for any number of rows; the fold keeps a
224x224x3 image at a few hundred microseconds.
"""

from __future__ import annotations

import numpy as np

DIMENSIONS = 24  # float16 each: 48 bytes per kept query
FOLD = 1024  # values the row is folded onto before the dense projection
SEED = 0x5EED_71E5  # fixed: every worker and replica computes the same fingerprints


class Sketch:
    """Maps rows of ``n_features`` values to ``DIMENSIONS``-long fingerprints.

    >>> import numpy as np
    >>> sketch = Sketch(4)
    >>> a, b = sketch(np.array([[0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0]]))
    >>> 3.5 < float(np.linalg.norm(a - b)) < 6.5   # about the rows' distance, 5
    True
    """

    def __init__(self, n_features: int, center: np.ndarray | None = None) -> None:
        rng = np.random.default_rng(SEED)
        self.n_features = n_features
        self.width = min(n_features, FOLD)
        self.padded = -(-n_features // self.width) * self.width
        signs = rng.choice(np.array([-1.0, 1.0]), size=n_features)
        self._signs = signs.astype(np.float32)
        planes = rng.standard_normal((self.width, DIMENSIONS)) / np.sqrt(DIMENSIONS)
        self._planes = planes.astype(np.float32)
        self._center = (
            np.zeros(n_features, dtype=np.float32)
            if center is None
            else np.asarray(center, dtype=np.float32).reshape(n_features)
        )

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Fingerprints, float32 of shape (n, DIMENSIONS), of rows of shape (n, *features)."""
        flat = np.asarray(rows, dtype=np.float32).reshape(len(rows), self.n_features)
        signed = (flat - self._center) * self._signs
        if self.padded != self.n_features:
            signed = np.pad(signed, ((0, 0), (0, self.padded - self.n_features)))
        folded = signed.reshape(len(rows), -1, self.width).sum(axis=1)
        fingerprints: np.ndarray = folded @ self._planes
        return fingerprints
