"""The shared view's thresholds on the digits: the calibration tests check them."""

from __future__ import annotations

from ..view.conftest import thresholds

__all__ = ["thresholds"]
