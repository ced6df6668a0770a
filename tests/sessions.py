"""Helpers shared by test folders."""

from __future__ import annotations

from coderag_daemon.engine import ContextCache, UpdateStats


class CacheSession:
    """What `jobs.complete` needs of a worker session, over a bare cache: no preemption, no cancel."""

    def __init__(self, cache: ContextCache) -> None:
        self.cache = cache

    def update(self, segments: list[list[int]], seq: int = 0) -> UpdateStats:
        return self.cache.update(segments, seq=seq)

    def cancelled(self) -> bool:
        return False
