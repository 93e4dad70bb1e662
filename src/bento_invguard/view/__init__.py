"""The shared view: every caller's recent queries, so a probing cluster is caught whatever key."""

from .shared_view import Judgement, SharedView
from .stores import MemoryViewStore, RedisViewStore, ViewStore

__all__ = [
    "Judgement",
    "MemoryViewStore",
    "RedisViewStore",
    "SharedView",
    "ViewStore",
]
