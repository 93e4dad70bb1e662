"""Query-pattern monitor: detect inversion and extraction probing per principal."""

from .distribution import DistributionReference
from .history import History
from .monitor import Monitor, run_without_io
from .store import MemoryStore, MonitorStore, RedisStore, open_monitor_store

__all__ = [
    "DistributionReference",
    "History",
    "MemoryStore",
    "Monitor",
    "MonitorStore",
    "RedisStore",
    "open_monitor_store",
    "run_without_io",
]
