"""The work of the index thread: the changes waiting by path, the builds asked for, and the save timer.

Changes are queued and applied by one background thread, so the callers (the LSP event loop, the
disk watcher) never wait for a file to be read or tokenized. The queue holds one entry per path (the
latest change wins) and applies a path at most once per ``min_update_interval``: a file rewritten a
thousand times a second is indexed a few times a second, its last version included. The queue is
bounded: past ``max_pending`` paths (a checkout of a huge tree), it is dropped for a rescan of the
roots, which reads again only what changed. A build takes the changes that are due between files
(:meth:`ChangeQueue.take_ready`), so edits show up while a large tree is still being indexed.

Thread rules: everything here is guarded by ``cond``, held only to queue or take work, never while
a job runs; the jobs (apply, build, save) run one at a time on the index thread, the only writer of
the index.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Literal

from .build import BuildReport, Progress

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    kind: Literal["disk", "text", "remove"]
    text: str = ""


DISK = Change("disk")
REMOVE = Change("remove")
Batch = list[tuple[str, Change]]
_BATCH = 256


class ChangeQueue:
    """Runs the index thread, which calls ``apply`` with batches of due changes, ``build`` for each
    build asked for (and for a rescan after an overflow), and ``save`` when the save timer is due."""

    def __init__(
        self,
        min_update_interval: float,
        max_pending: int,
        *,
        apply: Callable[[Batch], None],
        build: Callable[[Progress | None], BuildReport],
        save: Callable[[], None],
    ) -> None:
        self._min_update_interval = min_update_interval
        self._max_pending = max_pending
        self._apply = apply
        self._build = build
        self._save = save
        self.cond = threading.Condition()
        self._pending: dict[str, Change] = {}
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._not_before: dict[str, float] = {}
        self._builds: list[tuple[Progress | None, Future[BuildReport]]] = []
        self._save_at: float | None = None
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="coderag-index", daemon=True)
        self._thread.start()

    # --- any thread ---------------------------------------------------------------------------------

    def put(self, key: str, change: Change) -> None:
        """Queue a change of the file or directory at ``key``, in place of any change of it still waiting."""
        with self.cond:
            if self._stopping:
                return
            if key not in self._pending:
                if len(self._pending) >= self._max_pending:
                    self._overflow()
                    return
                due = max(time.monotonic(), self._not_before.get(key, 0.0))
                self._due[key] = due
                heapq.heappush(self._heap, (due, next(self._seq), key))
            self._pending[key] = change
            self.cond.notify_all()

    def request_build(self, progress: Progress | None) -> Future[BuildReport]:
        future: Future[BuildReport] = Future()
        with self.cond:
            self._builds.append((progress, future))
            self.cond.notify_all()
        return future

    def save_later(self, delay: float) -> None:
        """Save ``delay`` seconds from now, unless a save is due already."""
        with self.cond:
            if self._save_at is None:
                self._save_at = time.monotonic() + delay

    def __len__(self) -> int:
        """Paths waiting."""
        with self.cond:
            return len(self._pending)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every queued change and build is applied; False on timeout."""
        with self.cond:
            return self.cond.wait_for(lambda: not (self._pending or self._builds or self._busy), timeout)

    def close(self) -> None:
        """Stop the index thread once its current job is done; queued changes are dropped and
        builds not started are cancelled."""
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        self._thread.join()
        for _, future in self._builds:
            future.cancel()

    # --- the index thread ---------------------------------------------------------------------------

    def take_ready(self) -> Batch:
        """The changes that are due now, for a build to apply between files."""
        with self.cond:
            return self._take_ready(time.monotonic())

    def _overflow(self) -> None:
        """Too many distinct paths changed (called with ``cond`` held): rescan instead."""
        logger.warning(
            "more than %d files changed at once; rescanning the workspace instead of following each change",
            self._max_pending,
        )
        self._pending.clear()
        self._due.clear()
        self._heap.clear()
        if not self._builds:
            self._builds.append((None, Future()))

    def _take_ready(self, now: float) -> Batch:
        """Up to _BATCH changes that are due (called with ``cond`` held)."""
        batch: Batch = []
        while self._heap and self._heap[0][0] <= now and len(batch) < _BATCH:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) != due:
                continue  # superseded entry
            del self._due[key]
            batch.append((key, self._pending.pop(key)))
            self._not_before[key] = now + self._min_update_interval
        if len(self._not_before) > self._max_pending:
            self._not_before = {k: t for k, t in self._not_before.items() if t > now}
        return batch

    def _run(self) -> None:
        while True:
            with self.cond:
                job = self._next_job()
                if job is None:
                    return
                self._busy = True
            try:
                job()
            except Exception:
                logger.exception("index update failed")
            finally:
                with self.cond:
                    self._busy = False
                    self.cond.notify_all()

    def _next_job(self) -> Callable[[], None] | None:
        """Wait for the next thing to do (called with ``cond`` held); None when stopping."""
        while not self._stopping:
            if self._builds:
                progress, future = self._builds.pop(0)
                return lambda: self._run_build(progress, future)
            now = time.monotonic()
            batch = self._take_ready(now)
            if batch:
                return lambda: self._apply(batch)
            if self._save_at is not None and self._save_at <= now:
                self._save_at = None
                return self._save
            wake = [t for t in (self._heap[0][0] if self._heap else None, self._save_at) if t is not None]
            self.cond.wait(min(wake) - now if wake else None)
        return None

    def _run_build(self, progress: Progress | None, future: Future[BuildReport]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            report = self._build(progress)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        future.set_result(report)
