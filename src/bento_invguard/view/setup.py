"""The shared view a policy asks for: its thresholds, its store, or none (and why)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..policy import Policy
from ..reference import Profile, Thresholds
from ..storage import REDIS_DEFAULTS, is_memory, storage_uri
from .entries import table_rows
from .shared_view import SharedView
from .stores import MemoryViewStore, RedisViewStore, ViewStore

RANGE_SHARE = 0.01  # without a profile: the radius is 1 % of the input range's diagonal
DEFAULT_CLUSTER = 3
logger = logging.getLogger("bento_invguard")


def view_thresholds(policy: Policy, profile: Profile | None) -> Thresholds | None:
    """The policy's radius and cluster size, else the profile's calibration for half the
    policy's false-positive rate, else a radius from the input range; None: no way to tell."""
    view, monitor = policy.monitor.view, policy.monitor
    calibrated = None
    if profile is not None and profile.calibration is not None:
        neighbours = profile.calibration.neighbours
        if neighbours is not None:
            calibrated = neighbours.thresholds(monitor.target_false_positive_rate / 2, view.size)
    radius = view.radius or (calibrated.radius if calibrated else _range_radius(policy, profile))
    if radius is None:
        return None
    cluster = view.cluster_size or (calibrated.cluster_size if calibrated else DEFAULT_CLUSTER)
    return Thresholds(radius=radius, cluster_size=cluster)


def _range_radius(policy: Policy, profile: Profile | None) -> float | None:
    spec = policy.input
    shape = spec.shape or (profile.feature_shape if profile is not None else None)
    if spec.min is None or spec.max is None or shape is None or spec.max <= spec.min:
        return None
    return RANGE_SHARE * (spec.max - spec.min) * math.sqrt(math.prod(shape))


def open_shared_view(
    policy: Policy,
    profile: Profile | None,
    model_version: Callable[[], str],
    clock: Callable[[], float] = time.time,
) -> SharedView | None:
    """The policy's shared view (memory:// or Redis), or None with a warning that says why."""
    if not policy.monitor.enabled:
        return None
    thresholds = view_thresholds(policy, profile)
    if thresholds is None:
        logger.warning(
            "bento_invguard: the shared view is off: it needs a reference profile "
            "(input.profile), input.min, input.max and input.shape, or monitor.view.radius; "
            "probing spread over many keys is then not caught"
        )
        return None
    size, ttl = policy.monitor.view.size, policy.monitor.view.ttl
    center = np.asarray(profile.mean) if profile is not None else None

    def open_store() -> ViewStore:
        uri = storage_uri(policy)
        if is_memory(uri):
            return MemoryViewStore(size, table_rows(size))
        import redis.asyncio

        options: dict[str, Any] = {**REDIS_DEFAULTS, **policy.storage_options}
        client = redis.asyncio.Redis.from_url(uri, **options)
        return RedisViewStore(client, model_version(), size, ttl)

    return SharedView(thresholds, size=size, ttl=ttl, center=center, store=open_store, clock=clock)
