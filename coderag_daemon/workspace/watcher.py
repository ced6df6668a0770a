"""Files changed on disk outside the editor, reported as coalesced callbacks.

Raw filesystem events are only hints to look at a path again: they are
collected per path for ``delay`` seconds, then the path's state on disk decides
what is reported. A file rewritten a thousand times a second is therefore
reported at most once per ``delay``, and a burst of events costs one entry per
distinct path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from watchdog.events import (
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MOVED,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from coderag_daemon.workspace.admission import AdmissionPolicy, is_gitignore

logger = logging.getLogger(__name__)

PathCallback = Callable[[str], Any]
MoveCallback = Callable[[str, str], Any]

# Directory creations and modifications are left out: files report themselves
# (watchdog also reports the files of a directory moved in from outside).
_EVENT_FILTER = [
    FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent, FileMovedEvent,
    DirDeletedEvent, DirMovedEvent,
]  # fmt: skip


class _Handler(FileSystemEventHandler):
    def __init__(self, receive: Callable[[FileSystemEvent], None]) -> None:
        self._receive = receive

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._receive(event)


class DiskWatcher:
    """Watches the policy's roots and reports changes to admitted paths.

    - ``on_change(path)``: an admitted file was created or written (its content may be new to you).
    - ``on_delete(path)``: ``path`` left the context: it was deleted, or its content is no
      longer admitted (now binary, too large), or its name is admitted but it now resolves to
      a refused place (replaced by a symlink out of the roots). For a directory, this is one
      call for the directory: forgetting the files under it is the caller's job.
    - A ``.gitignore`` that changed is reported (``on_change``/``on_delete``) even when it
      ignores itself, as long as its directory is admitted: its rules may now refuse files
      that the caller holds.
    - ``on_move(src, dst)``: a file or directory moved, both places admitted. A moved file
      is also reported by ``on_change(dst)`` afterwards, since a move can replace a file.

    Paths are absolute strings under the policy's roots when it starts: new roots take a new
    watcher. Callbacks run on the watcher's own thread, never on the LSP thread.
    """

    def __init__(
        self,
        policy: AdmissionPolicy,
        on_change: PathCallback,
        on_delete: PathCallback,
        on_move: MoveCallback,
        *,
        delay: float = 0.1,
    ) -> None:
        self._policy = policy
        self._on_change = on_change
        self._on_delete = on_delete
        self._on_move = on_move
        self._delay = delay
        self._handler = _Handler(self._receive)
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, ObservedWatch] = {}
        self._flusher: threading.Thread | None = None
        self._cond = threading.Condition()
        self._pending: dict[tuple[str, ...], bool] = {}  # ("path", p) | ("move", src, dst) -> is_dir
        self._batch_started = 0.0
        self._stopping = False

    def start(self) -> None:
        """Start watching all roots of the policy."""
        if self._observer is not None:
            raise RuntimeError("DiskWatcher already started")
        self._stopping = False
        self._observer = Observer()
        try:
            for root in self._policy.roots:
                self._schedule(root)
            self._observer.start()
        except BaseException:
            self._observer = None
            self._watches.clear()
            raise
        self._flusher = threading.Thread(target=self._run, name="coderag-disk-watcher", daemon=True)
        self._flusher.start()

    def stop(self) -> None:
        """Stop watching and wait for the threads; events not yet reported are dropped."""
        if self._observer is None:
            return
        self._observer.stop()
        self._observer.join()
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify()
        assert self._flusher is not None
        self._flusher.join()
        self._observer = self._flusher = None
        self._watches.clear()

    def __enter__(self) -> DiskWatcher:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _schedule(self, root: Path) -> None:
        assert self._observer is not None
        if root not in self._watches:
            self._watches[root] = self._observer.schedule(
                self._handler, str(root), recursive=True, event_filter=_EVENT_FILTER
            )

    def _receive(self, event: FileSystemEvent) -> None:
        """Record a raw event (observer thread); cheap, no I/O."""
        if event.is_synthetic and event.event_type == EVENT_TYPE_MOVED:
            return  # the files of a moved directory: the directory's own move covers them
        if event.is_directory and event.event_type not in (EVENT_TYPE_MOVED, EVENT_TYPE_DELETED):
            return
        src = os.fsdecode(event.src_path)
        with self._cond:
            if not self._pending:
                self._batch_started = time.monotonic()
                self._cond.notify()
            if event.event_type == EVENT_TYPE_MOVED:
                dst = os.fsdecode(event.dest_path)
                self._pending.pop(("path", src), None)  # whatever was written there is now at dst
                self._put(("move", src, dst), event.is_directory)
                if not event.is_directory:
                    self._put(("path", dst), False)
            else:
                self._put(("path", src), event.is_directory)

    def _put(self, key: tuple[str, ...], is_dir: bool) -> None:
        """(Re)insert at the end, so that a path's last event is reported after the others."""
        self._pending.pop(key, None)
        self._pending[key] = is_dir

    def _run(self) -> None:
        """Flusher thread: report what accumulated, ``delay`` after a batch's first event."""
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                while not self._stopping and (left := self._batch_started + self._delay - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._stopping:
                    return
                batch, self._pending = self._pending, {}
            self._report(batch)

    def _report(self, batch: dict[tuple[str, ...], bool]) -> None:
        for key, is_dir in batch.items():  # rules first, so this batch is judged by the new ones
            for path in key[1:]:
                if is_dir or is_gitignore(path):
                    self._policy.invalidate(path)
        for key, is_dir in batch.items():
            try:
                if key[0] == "move":
                    self._report_move(key[1], key[2], is_dir)
                else:
                    self._report_path(key[1], is_dir)
            except Exception:  # a bad path must not stop the watcher
                logger.exception("failed to report %s", key)

    def _report_path(self, path: str, is_dir: bool) -> None:
        if not self._policy.check_location(path, is_dir=is_dir):
            if self._policy.check_location(path, is_dir=is_dir, follow_symlinks=False):
                self._call(self._on_delete, path)  # in view by name, but it points to a refused place now
            elif is_gitignore(path) and self._policy.check_location(os.path.dirname(path), is_dir=True):
                self._call(self._on_change if os.path.exists(path) else self._on_delete, path)
            return
        if os.path.isdir(path):
            return  # a directory that exists: its files report themselves
        if os.path.exists(path) and self._policy.check_content(path):
            self._call(self._on_change, path)
        else:
            self._call(self._on_delete, path)

    def _report_move(self, src: str, dst: str, is_dir: bool) -> None:
        src_ok = self._policy.check_location(src, is_dir=is_dir)
        dst_ok = self._policy.check_location(dst, is_dir=is_dir)
        if src_ok and dst_ok:
            self._call(self._on_move, src, dst)
        elif src_ok:
            self._call(self._on_delete, src)
        elif dst_ok and is_dir:  # a directory moved into view: its files are new
            for path in self._policy.walk(dst):
                self._call(self._on_change, str(path))
        # a file moved into view is reported by its ("path", dst) entry

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            logger.exception("watcher callback %s%r failed", getattr(callback, "__name__", callback), args)
