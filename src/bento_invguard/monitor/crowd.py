"""All keys' answered rows together: the distribution signal's view across keys.

An attacker who rotates many keys sends each only a few rows: too few for
one key's running test. Together, though, its rows move the running sum of
everything the service answers off the same way. :class:`Crowd` keeps that
sum (decayed per row, like a key's); while it is past the reference's limit,
its direction is the way the traffic is off, and each key is also tested
along that one direction, which takes far fewer rows than the test over every
direction (see :meth:`DistributionReference.score`). The crowd is tested
every :data:`EVERY` queries: it moves little from one row to the next.

The crowd lives in the process: with several workers, each has the crowd of
the traffic it serves, while the keys' own sums are shared through the store.
"""

from __future__ import annotations

import numpy as np

from .signal import Signal, decayed_sum

EVERY = 8  # queries between tests of the crowd


class Crowd:
    """The decayed running sum of every answered row's statistics. Rows wait in a short
    list and are summed, with their decay, when the crowd is next tested.

    >>> import numpy as np
    >>> crowd = Crowd()
    >>> crowd.add(np.ones((3, 2)))
    >>> crowd.settle(decay=0.5)
    >>> crowd.rows, crowd.running.tolist()
    (3, [1.75, 1.75])
    """

    def __init__(self) -> None:
        self.running = np.zeros(0)
        self.rows = 0
        self._pending: list[np.ndarray] = []
        self._direction: np.ndarray | None = None

    def add(self, stats: np.ndarray) -> None:
        """Add rows' statistics (n, size), oldest first."""
        self._pending.append(stats)

    def settle(self, decay: float) -> None:
        """Sum the waiting rows into the running sum."""
        if not self._pending:
            return
        stats = np.concatenate(self._pending)
        self._pending.clear()
        if self.running.shape != stats.shape[1:]:
            self.rows = 0
        self.running = decayed_sum(self.running, stats, decay)
        self.rows += len(stats)

    def direction(self, reference: Signal) -> np.ndarray | None:
        """The unit direction the traffic is off along, while it is off; else None (as
        of the last test, at most :data:`EVERY` queries ago)."""
        if len(self._pending) < EVERY:
            return self._direction
        self.settle(reference.decay)
        self._direction = None
        if self.running.shape == (reference.size,) and reference.off(self.running, self.rows):
            self._direction = self.running / np.linalg.norm(self.running)
        return self._direction
