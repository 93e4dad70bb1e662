"""The reference profile: what natural inputs look like, fitted on training data and
calibrated on held-out data. Input validation, the shared view and the monitor read it."""

from .calibration import NeighbourCalibration, Thresholds
from .profile import Profile
from .profile_check import ProfileCheck, Violation
from .sketch import Sketch

__all__ = ["NeighbourCalibration", "Profile", "ProfileCheck", "Sketch", "Thresholds", "Violation"]
