"""The shared view: every caller's recent queries, so a probing cluster is caught whatever key."""

from .calibration import NeighbourCalibration, Thresholds
from .shared_view import Judgement, SharedView
from .sketch import Sketch
from .stores import MemoryViewStore, RedisViewStore, ViewStore

__all__ = [
    "Judgement",
    "MemoryViewStore",
    "NeighbourCalibration",
    "RedisViewStore",
    "SharedView",
    "Sketch",
    "Thresholds",
    "ViewStore",
]
