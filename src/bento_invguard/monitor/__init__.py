"""Query-pattern monitor: detect inversion and extraction probing per principal."""

from .history import History
from .monitor import Monitor, run_without_io
from .store import MemoryStore, MonitorStore, RedisStore, open_monitor_store

__all__ = [
    "History",
    "MemoryStore",
    "Monitor",
    "MonitorStore",
    "RedisStore",
    "open_monitor_store",
    "run_without_io",
]
