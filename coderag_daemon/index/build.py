"""Files and editor buffers into index entries: the walk of the roots, reading, chunking and
tokenizing, and the reuse of what is indexed or saved when a file did not change.

Everything here runs on the index thread, the only writer of the entries.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..workspace.admission import AdmissionPolicy
from ..workspace.files import read_capped
from . import store
from .chunking import ChunkOptions, chunk_text
from .entries import IndexEntries
from .identifiers import count_terms
from .persistence import SavedIndex
from .store import FileRecord

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], Any]
"""Called as ``progress(files_done, files_total)`` from the index thread during a build."""

Outcome = Literal["indexed", "reused", "kept", "dropped"]

_PROGRESS_SECONDS = 0.2


@dataclass(frozen=True)
class BuildReport:
    files: int
    """Files in the index after the build."""
    chunks: int
    indexed: int
    """Files read and chunked."""
    reused: int
    """Files whose saved chunks were taken as they were (unchanged since the last run)."""
    removed: int
    seconds: float


class Indexer:
    """Keeps ``entries`` in line with the files that ``policy`` admits (``policy`` is replaced when
    the roots or the rules change). ``max_files``: files listed by a build at most."""

    def __init__(
        self, entries: IndexEntries, saved: SavedIndex, policy: AdmissionPolicy, chunking: ChunkOptions, max_files: int
    ) -> None:
        self._entries = entries
        self.policy = policy
        self.chunked = 0
        """Files chunked and tokenized since start."""
        self._saved = saved
        self._chunking = chunking
        self._max_files = max_files

    def build(self, progress: Progress | None, between_files: Callable[[], None]) -> BuildReport:
        """Read the saved index of roots not read yet, index new and changed files, drop files that
        are gone or no longer admitted, then save. ``between_files`` is called every few files, to
        apply the changes queued meanwhile."""
        started = time.perf_counter()
        policy = self.policy
        roots = policy.roots
        outside = self._entries.keys_where(lambda key, entry: entry.root not in roots)
        for key in outside:
            self._entries.discard(key)
        listed: list[tuple[str, Path]] = []
        for root in roots:
            for path in policy.walk(root):
                if len(listed) == self._max_files:
                    logger.warning("indexing the first %d files only (max_files)", len(listed))
                    break
                listed.append((str(path), root))
        saved = self._saved.load(roots, self._entries)
        if progress is not None:
            progress(0, len(listed))
        counts: Counter[str] = Counter()
        last_report = time.monotonic()
        for done, (key, root) in enumerate(listed, 1):
            entry = self._entries.get(key)
            if entry is not None and entry.mtime_ns is None:
                counts["kept"] += 1  # an editor buffer's text stays until the editor says otherwise
            else:
                counts[self._refresh(key, root, saved=saved.get(key))] += 1
            if done % 64 == 0:
                between_files()
            if progress is not None and (done == len(listed) or time.monotonic() - last_report > _PROGRESS_SECONDS):
                progress(done, len(listed))
                last_report = time.monotonic()
        keep = {key for key, _ in listed}
        gone = self._entries.keys_where(
            lambda key, entry: key not in keep and not (entry.mtime_ns is None and policy.check_location(key))
        )
        for key in gone:
            self._entries.discard(key)
        self._entries.prepare(merge=True)
        stats = self._entries.stats()
        self._saved.save(self.policy.roots, self._entries)
        report = BuildReport(
            stats["files"],
            stats["chunks"],
            counts["indexed"],
            counts["reused"],
            len(outside) + len(gone) + counts["dropped"],
            time.perf_counter() - started,
        )
        logger.info(
            "workspace index: %d files, %d chunks (%d indexed, %d unchanged since the last run, %d removed) in %.1fs",
            report.files,
            report.chunks,
            report.indexed,
            report.reused,
            report.removed,
            report.seconds,
        )
        return report

    def index_path(self, key: str) -> None:
        """Index what is on disk at ``key``: a file, or the files of a directory that appeared or moved in."""
        if os.path.isdir(key):
            for path in self.policy.walk(key):
                self._refresh(str(path))
        else:
            self._refresh(key)

    def remove(self, key: str) -> None:
        """Drop a file, or every file under a directory."""
        for k in self._entries.keys_at(key):
            self._entries.discard(k)

    def _refresh(self, key: str, root: Path | None = None, *, saved: FileRecord | None = None) -> Outcome:
        """Index the file at ``key`` as it is on disk, reading it only if its size or mtime differ
        from what is indexed (or saved). ``root``: the file was listed by the admission policy's walk
        of that root, so its admission is not checked again."""
        if root is None:
            root = self.policy.root_of(key)
            if root is None or not (self.policy.check_location(key) and self.policy.check_content(key)):
                return self._drop(key)
        try:
            st = os.stat(key)
        except OSError:
            return self._drop(key)
        entry = self._entries.get(key)
        if entry is not None and (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return "kept"
        if (
            saved is not None
            and (saved.size, saved.mtime_ns) == (st.st_size, st.st_mtime_ns)
            and self._entries.install(key, root, saved, None)
        ):
            return "reused"
        data = read_capped(key, self.policy.options.max_file_bytes)
        if data is None:
            return self._drop(key)
        size, mtime_ns, file_digest = len(data), st.st_mtime_ns, store.digest(data)
        if entry is not None and entry.digest == file_digest:
            self._entries.renew(key, entry, root, size, mtime_ns)
            return "kept"
        if (
            saved is not None
            and saved.digest == file_digest
            and self._entries.install(key, root, replace(saved, size=size, mtime_ns=mtime_ns), None)
        ):
            return "reused"
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            logger.info("not indexing %s: not valid UTF-8", key)
            return self._drop(key)
        self._entries.install(key, root, self._record(key, root, text, size, mtime_ns, file_digest), None)
        return "indexed"

    def index_text(self, key: str, text: str) -> None:
        """Index an editor buffer's text in place of the file's."""
        root = self.policy.root_of(key)
        if root is None or not (self.policy.check_location(key) and self.policy.check_text(key, text)):
            self._entries.discard(key)
            return
        data = text.encode("utf-8", "surrogatepass")
        file_digest = store.digest(data)
        entry = self._entries.get(key)
        if entry is not None and entry.digest == file_digest:
            return  # e.g. a file opened unmodified
        self._entries.install(key, root, self._record(key, root, text, len(data), None, file_digest), text)

    def _drop(self, key: str) -> Outcome:
        self._entries.discard(key)
        return "dropped"

    def _record(self, key: str, root: Path, text: str, size: int, mtime_ns: int | None, file_digest: str) -> FileRecord:
        """Chunk and tokenize a file's text; each chunk also gets the words of the file's path."""
        self.chunked += 1
        chunks = chunk_text(key, text, self._chunking)
        path_terms = count_terms(os.path.relpath(key, root))
        per_chunk = []
        for chunk in chunks:
            counts = count_terms(chunk.text)
            for term, n in path_terms.items():
                counts[term] = counts.get(term, 0) + n
            per_chunk.append(counts)
        terms = self._entries.term_ids_each(per_chunk)
        return FileRecord(
            size,
            mtime_ns,
            file_digest,
            tuple((c.start_line, c.end_line, c.title) for c in chunks),
            np.concatenate([np.zeros(0, dtype=np.int32), *terms]),
            np.fromiter((n for counts in per_chunk for n in counts.values()), dtype=np.float32),
            np.cumsum([0, *map(len, terms)], dtype=np.int64),
        )
