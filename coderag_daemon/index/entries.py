"""The indexed files and their BM25 documents (one per chunk), under one lock.

Thread rules: only the index thread changes them, always under ``lock``, which it holds only to
swap a file's documents, so a search on another thread waits at most that long. The index thread
may also read them without the lock (no one else writes); other threads read them under the lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..workspace.files import keys_under
from .bm25 import Bm25Index, Bm25Options
from .chunking import Span
from .store import FileRecord

logger = logging.getLogger(__name__)

Ranked = tuple[float, str, Span, "Entry"]
"""A search result: score, file key, the chunk's span, and the file's entry as it was when ranked."""


@dataclass(frozen=True, slots=True)
class Entry:
    root: Path
    size: int
    mtime_ns: int | None
    """None while the indexed text is an editor buffer's rather than the file's."""
    digest: str
    spans: tuple[Span, ...]
    docs: tuple[int, ...]
    text: str | None
    """An editor buffer's text (None for a file indexed from disk)."""


class IndexEntries:
    """The files of the index by absolute path, each with its chunks' BM25 documents, and the roots
    changed since they were last saved. At most ``max_files`` files: further ones are refused."""

    def __init__(self, bm25: Bm25Options, max_files: int) -> None:
        self.lock = threading.Lock()
        self._max_files = max_files
        self._bm25 = Bm25Index(bm25)
        self._entries: dict[str, Entry] = {}
        self._doc_keys: list[str | None] = []  # by document id: the file and chunk of each document
        self._doc_spans: list[Span | None] = []
        self._bytes = 0
        self._dirty_roots: set[Path] = set()
        self._full_logged = False

    # --- reading (any thread) -----------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self.lock:
            return self._entries.get(key)

    def __contains__(self, key: str) -> bool:
        with self.lock:
            return key in self._entries

    def rank(self, query_terms: list[str], k: int, exclude_keys: Iterable[str]) -> list[Ranked]:
        """The ``k`` best chunks for ``query_terms``, leaving out the chunks of ``exclude_keys``."""
        with self.lock:
            excluded = [doc for key in exclude_keys if (e := self._entries.get(key)) is not None for doc in e.docs]
            ranked: list[Ranked] = []
            for doc, score in self._bm25.top(query_terms, k, excluded):
                key, span = self._doc_keys[doc], self._doc_spans[doc]
                assert key is not None and span is not None  # top() returns documents in the index only
                ranked.append((score, key, span, self._entries[key]))
            return ranked

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "files": len(self._entries),
                "chunks": len(self._bm25),
                "bytes": self._bytes,
                "terms": self._bm25.vocabulary_size,
            }

    # --- changing (index thread) --------------------------------------------------------------------

    def keys_where(self, test: Callable[[str, Entry], bool]) -> list[str]:
        """The files for which ``test(key, entry)`` holds (called under the lock)."""
        with self.lock:
            return [key for key, entry in self._entries.items() if test(key, entry)]

    def keys_at(self, path: str) -> list[str]:
        """The file at ``path``, or every file under it when it is not an indexed file (a directory)."""
        with self.lock:
            return [path] if path in self._entries else keys_under(self._entries, path)

    def term_ids(self, terms: Iterable[str]) -> np.ndarray:
        """The ids of ``terms``, new terms added to the vocabulary (which searches read)."""
        with self.lock:
            return self._bm25.term_ids(terms)

    def term_ids_each(self, groups: Iterable[Iterable[str]]) -> list[np.ndarray]:
        """:meth:`term_ids` of each group (e.g. the chunks of a file), under one hold of the lock."""
        with self.lock:
            return [self._bm25.term_ids(terms) for terms in groups]

    def install(self, key: str, root: Path, record: FileRecord, text: str | None) -> bool:
        """Put a file's chunks in the index in place of its old ones (``text``: the editor buffer
        they come from); False if the index is full."""
        with self.lock:
            old = self._entries.get(key)
            if old is None and len(self._entries) >= self._max_files:
                if not self._full_logged:
                    logger.warning(
                        "workspace index full (%d files, max_files): further files are not indexed", len(self._entries)
                    )
                    self._full_logged = True
                return False
            if old is not None:
                self._forget(old)
            docs = tuple(self._bm25.add(record.terms, record.counts, record.offsets))
            for doc, span in zip(docs, record.spans, strict=True):  # one document per chunk
                if doc >= len(self._doc_keys):
                    self._doc_keys += [None] * (doc + 1 - len(self._doc_keys))
                    self._doc_spans += [None] * (doc + 1 - len(self._doc_spans))
                self._doc_keys[doc], self._doc_spans[doc] = key, span
            self._entries[key] = Entry(root, record.size, record.mtime_ns, record.digest, record.spans, docs, text)
            self._bytes += record.size - (old.size if old is not None else 0)
            self._dirty_roots.add(root)
            return True

    def renew(self, key: str, entry: Entry, root: Path, size: int, mtime_ns: int) -> None:
        """The file on disk holds the indexed text (a touch, or the indexed buffer saved): note its
        size and mtime, unless ``entry`` was replaced meanwhile."""
        with self.lock:
            if self._entries.get(key) is entry:
                self._entries[key] = replace(entry, size=size, mtime_ns=mtime_ns, text=None)
                self._dirty_roots.add(root)

    def discard(self, key: str) -> None:
        with self.lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._forget(entry)
                self._bytes -= entry.size
                self._dirty_roots.add(entry.root)
                self._full_logged = False

    def _forget(self, entry: Entry) -> None:
        for doc in entry.docs:
            self._bm25.remove(doc)
            self._doc_keys[doc] = self._doc_spans[doc] = None

    def prepare(self, merge: bool = False) -> None:
        """Do the sorting that the next search would otherwise do. A merge is computed without the
        lock (the index thread is the only writer), so searches go on meanwhile."""
        plan = self._bm25.plan_merge(force=merge)
        with self.lock:
            if plan is not None:
                self._bm25.apply_merge(plan)
            self._bm25.prepare()

    # --- saving (index thread, or after it stopped) -------------------------------------------------

    def mark_dirty(self, root: Path) -> None:
        with self.lock:
            self._dirty_roots.add(root)

    def has_dirty(self) -> bool:
        with self.lock:
            return bool(self._dirty_roots)

    def take_dirty(self, roots: Iterable[Path]) -> set[Path]:
        """Which of ``roots`` changed since they were last saved; they count as saved from now on."""
        with self.lock:
            taken = self._dirty_roots & set(roots)
            self._dirty_roots -= taken
            return taken

    def entries_of(self, root: Path) -> dict[str, Entry]:
        """The files of ``root`` (read without the lock: the index thread only)."""
        return {key: e for key, e in self._entries.items() if e.root == root}

    def postings(self, docs: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Term ids, counts and per-document offsets of ``docs`` (index thread only)."""
        return self._bm25.postings(docs)

    def vocabulary(self) -> list[str]:
        """The term of each term id (index thread only)."""
        return self._bm25.term_names()
