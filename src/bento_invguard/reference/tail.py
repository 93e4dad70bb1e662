"""How far natural rows lie from the data, as a tail that gives a limit for any rate."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .calibration import NeighbourCalibration


class DistanceTail(BaseModel):
    """The upper tail of held-out rows' distances to the data, as an exponential beyond
    ``threshold``: a share ``share`` of natural rows lies past it, and past that the share
    falls by e for each ``scale``. Gives the limit for any false-positive rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(ge=0)
    scale: float = Field(gt=0)
    share: float = Field(gt=0, lt=1)
    rows: int = Field(ge=1, description="Held-out rows the tail was measured on.")
    largest: tuple[float, ...] = Field(
        default=(), description="The largest held-out distances, to check a limit against."
    )

    @classmethod
    def fit(cls, distances: np.ndarray, share: float = 0.1) -> DistanceTail | None:
        threshold = float(np.quantile(distances, 1.0 - share))
        excess = distances[distances > threshold] - threshold
        if len(excess) < 5 or not excess.mean() > 0:
            return None
        largest = tuple(float(d) for d in np.sort(distances)[::-1][:20])
        return cls(
            threshold=threshold,
            scale=float(excess.mean()),
            share=share,
            rows=len(distances),
            largest=largest,
        )

    def held_out_above(self, limit: float) -> int:
        """Held-out rows farther than ``limit`` (counted among the largest kept)."""
        return sum(d > limit for d in self.largest)

    def limit(self, rate: float) -> float:
        """The distance that natural rows exceed at ``rate``."""
        return self.threshold + self.scale * max(0.0, float(np.log(self.share / rate)))


class Calibration(BaseModel):
    """What the profile measured on held-out reference rows, for a target false-positive rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    distance: DistanceTail | None = None
    neighbours: NeighbourCalibration | None = None
