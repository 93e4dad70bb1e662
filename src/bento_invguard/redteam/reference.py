"""The attacker's public labelled rows (arrays ``x`` and ``y``): its pool and held-out rows."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Reference:
    """Public labelled rows: the attacker's pool and held-out rows, the judge's training data."""

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        """An ``.npz`` with arrays ``x`` (n, features...) and ``y`` (n,) of class indices.

        Raises ``ValueError`` for a file that is not such an archive (a ``.npy``,
        a damaged zip) and ``OSError`` for one that cannot be read.
        """
        # Our own file object: np.load leaks the one it opens when the zip is unreadable.
        with open(path, "rb") as file:
            try:
                data = np.load(file, allow_pickle=False)
            except (ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise ValueError(f"not a readable .npz archive: {exc}") from None
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive of arrays x and y (a single array?)")
            with data:
                missing = {"x", "y"} - set(data.files)
                if missing:
                    raise ValueError(f"the file has no array named {', '.join(sorted(missing))}")
                try:
                    x, y = np.asarray(data["x"], dtype=np.float64), np.asarray(data["y"])
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise ValueError(f"damaged .npz archive: {exc}") from None
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) < 4:
            raise ValueError(
                f"need x of shape (n, features) and y of shape (n,), n >= 4; "
                f"got x {x.shape} and y {y.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("x holds NaN or infinite values")
        if y.dtype.kind not in "iu" or y.min() < 0:
            raise ValueError("y must hold class indices 0, 1, 2, ...")
        return cls(x.reshape(len(x), -1), y.astype(np.int64))

    def split(self, seed: int = 0) -> Split:
        """A seeded half/half split: the attacker's pool and the held-out rows."""
        order = np.random.default_rng(seed).permutation(len(self.x))
        pool, held = order[: len(order) // 2], order[len(order) // 2 :]
        return Split(self.x[pool], self.y[pool], self.x[held], self.y[held])


@dataclass(frozen=True)
class Split:
    """:meth:`Reference.split`: the pool's labels are for scoring only, attacks never see them."""

    pool_x: np.ndarray
    pool_y: np.ndarray
    held_x: np.ndarray
    held_y: np.ndarray
