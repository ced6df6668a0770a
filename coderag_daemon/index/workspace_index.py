"""The workspace index: the admitted files of the workspace roots, cut into chunks and ranked by
BM25, kept current by disk and editor events and saved between runs.

This is the face the server sees; the work is done by the parts, each with its thread rules:
:mod:`.changes` (the queue of changes and the one index thread that applies them), :mod:`.build`
(files into entries), :mod:`.entries` (the files and their BM25 documents, under one lock),
:mod:`.persistence` (the index between runs) and :mod:`.search` (the query side, on the caller's thread).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from ..workspace.admission import AdmissionPolicy
from . import search as _search
from .bm25 import Bm25Options
from .build import BuildReport, Indexer, Progress
from .changes import DISK, REMOVE, Batch, Change, ChangeQueue
from .chunking import ChunkOptions
from .entries import IndexEntries
from .persistence import SavedIndex
from .search import Hit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexOptions:
    """What is indexed and how (the build and the entries), then how changes are followed (the queue)."""

    max_files: int = 20_000
    """Files in the index at most; beyond, files are left out with a log line."""
    chunking: ChunkOptions = field(default_factory=ChunkOptions)
    bm25: Bm25Options = field(default_factory=Bm25Options)
    min_update_interval: float = 0.25
    """Seconds between two re-indexes of the same file; changes in between are coalesced."""
    max_pending: int = 10_000
    """Distinct paths waiting to be re-indexed at most; beyond, the queue is replaced by a rescan."""
    save_delay: float = 30.0
    """Seconds after the first unsaved change before the index is saved."""


class WorkspaceIndex:
    """The index of the files that ``policy`` admits under its roots.

    ``cache_dir`` (None: nothing is saved) receives one file per root. Call :meth:`build` at start
    and after the roots or the admission rules changed; the change methods from the disk and editor
    events; :meth:`close` at shutdown. All methods are thread-safe and, except :meth:`close`, return
    at once.
    """

    def __init__(
        self,
        policy: AdmissionPolicy,
        cache_dir: str | os.PathLike[str] | None = None,
        options: IndexOptions | None = None,
    ) -> None:
        self.options = options or IndexOptions()
        o = self.options
        self._entries = IndexEntries(o.bm25, o.max_files)
        self._saved = SavedIndex(Path(cache_dir) if cache_dir is not None else None, o.chunking)
        self._indexer = Indexer(self._entries, self._saved, policy, o.chunking, o.max_files)
        # last: it starts the index thread, whose jobs use the parts above
        self._queue = ChangeQueue(
            o.min_update_interval, o.max_pending, apply=self._apply, build=self._build, save=self._save
        )

    # --- requests -----------------------------------------------------------------------------------

    def set_policy(self, policy: AdmissionPolicy) -> None:
        """New admission rules or roots object; follow with :meth:`build` to apply them to indexed files."""
        with self._queue.cond:
            self._indexer.policy = policy

    def build(self, progress: Progress | None = None) -> Future[BuildReport]:
        """Bring the index in line with the roots on disk, in the background: read the saved index of
        roots not read yet, index new and changed files, drop files that are gone or no longer
        admitted, then save. Files whose size and mtime are unchanged are not read again."""
        return self._queue.request_build(progress)

    def update_path(self, path: str | os.PathLike[str]) -> None:
        """A file (or a directory's files) was created or changed on disk, or an editor buffer was
        closed: index what is on disk. Refused or vanished files are dropped."""
        self._queue.put(_key(path), DISK)

    def update_text(self, path: str | os.PathLike[str], text: str) -> None:
        """An editor buffer's text (didOpen, didChange): index it instead of the file on disk until
        the next :meth:`update_path` of the same path. Cheap: the text is only queued."""
        self._queue.put(_key(path), Change("text", text))

    def remove_path(self, path: str | os.PathLike[str]) -> None:
        """A file or directory was deleted: drop it, or everything under it."""
        self._queue.put(_key(path), REMOVE)

    def move(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        """A file or directory moved: drop what was at ``src`` and index what is now at ``dst``."""
        self._queue.put(_key(src), REMOVE)
        self._queue.put(_key(dst), DISK)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every queued change and build is applied; False on timeout."""
        return self._queue.wait_idle(timeout)

    def close(self, *, save: bool = True) -> None:
        """Stop the index thread (queued changes are dropped: the next build finds them on disk)
        and save what changed."""
        self._queue.close()
        if save:
            self._save()

    def __enter__(self) -> WorkspaceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, exclude_paths: Iterable[str | os.PathLike[str]] = ()) -> list[Hit]:
        """The ``k`` chunks that best match ``query``, best first; chunks of ``exclude_paths``
        (e.g. the files already in the model's context) are left out. A file changed on disk since
        it was indexed is left out too, and queued for re-indexing."""
        return _search.find(self._entries, self._indexer.policy, query, k, map(_key, exclude_paths), self.update_path)

    def __contains__(self, path: str | os.PathLike[str]) -> bool:
        return _key(path) in self._entries

    def stats(self) -> dict[str, int]:
        """Sizes, the changes waiting, and how many times a file was chunked and tokenized since start."""
        out = self._entries.stats()
        out["chunked"] = self._indexer.chunked
        out["pending"] = len(self._queue)
        return out

    # --- jobs of the index thread -------------------------------------------------------------------

    def _apply(self, batch: Batch) -> None:
        for key, change in batch:
            try:
                if change.kind == "remove":
                    self._indexer.remove(key)
                elif change.kind == "text":
                    self._indexer.index_text(key, change.text)
                else:
                    self._indexer.index_path(key)
            except Exception:
                logger.exception("indexing %s failed", key)
        self._entries.prepare()
        if self._saved.cache_dir is not None and self._entries.has_dirty():
            self._queue.save_later(self.options.save_delay)

    def _apply_between_files(self) -> None:
        """Apply the changes that are due, from inside a build."""
        batch = self._queue.take_ready()
        if batch:
            self._apply(batch)

    def _build(self, progress: Progress | None) -> BuildReport:
        return self._indexer.build(progress, self._apply_between_files)

    def _save(self) -> None:
        self._saved.save(self._indexer.policy.roots, self._entries)


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)
