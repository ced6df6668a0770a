"""The workspace index: the admitted files of the workspace roots, cut into chunks and ranked by
BM25, kept current by disk and editor events and saved between runs.

Changes are queued and applied by one background thread, so the callers (the LSP event loop, the
disk watcher) never wait for a file to be read or tokenized. The queue holds one entry per path (the
latest change wins) and applies a path at most once per ``min_update_interval``: a file rewritten a
thousand times a second is indexed a few times a second, its last version included. The queue is
bounded: past ``max_pending`` paths (a checkout of a huge tree), it is dropped for a rescan of the
roots, which reads again only what changed. A build applies queued changes between files, so edits
show up while a large tree is still being indexed. Searches run on the caller's thread under a lock
that changes hold only to swap a file's chunks.

The index keeps each chunk's line range and terms, not its text: a search reads the few files it
returns (a millisecond or so) and checks their hash, so a hit's text is always the file's current
lines at its range, and memory stays at about a third of the tree's size. Only editor buffers,
which exist nowhere else, are kept as text.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..workspace.admission import AdmissionPolicy
from ..workspace.documents import path_to_uri
from . import identifiers, store
from .bm25 import Bm25Index, Bm25Options
from .chunking import Chunk, ChunkOptions, Span, chunk_text, split_lines
from .identifiers import count_terms, terms
from .store import FileRecord

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], Any]
"""Called as ``progress(files_done, files_total)`` from the index thread during a build."""


@dataclass(frozen=True)
class IndexOptions:
    max_files: int = 20_000
    """Files in the index at most; beyond, files are left out with a log line."""
    min_update_interval: float = 0.25
    """Seconds between two re-indexes of the same file; changes in between are coalesced."""
    max_pending: int = 10_000
    """Distinct paths waiting to be re-indexed at most; beyond, the queue is replaced by a rescan."""
    save_delay: float = 30.0
    """Seconds after the first unsaved change before the index is saved."""
    chunking: ChunkOptions = field(default_factory=ChunkOptions)
    bm25: Bm25Options = field(default_factory=Bm25Options)


@dataclass(frozen=True)
class Hit:
    """One ranked chunk. Lines are 0-based, ``end_line`` exclusive, as in LSP."""

    path: Path
    """Absolute path of the file."""
    display: str
    """The path relative to its workspace root, as the model reads it in file headers."""
    start_line: int
    end_line: int
    title: str
    text: str
    score: float

    @property
    def label(self) -> str:
        """``path:line`` or ``path:first-last`` with 1-based lines, for the model and for people."""
        first, last = self.start_line + 1, self.end_line
        return f"{self.display}:{first}" if first == last else f"{self.display}:{first}-{last}"

    @property
    def uri(self) -> str:
        return path_to_uri(self.path)

    def lsp_range(self) -> dict[str, dict[str, int]]:
        """The chunk's LSP range, ending at the end of its last line (never past the end of the file)."""
        last = split_lines(self.text)[-1].rstrip("\r\n") if self.text else ""
        end_character = len(last.encode("utf-16-le", "surrogatepass")) // 2
        return {"start": {"line": self.start_line, "character": 0},
                "end": {"line": max(self.end_line - 1, self.start_line), "character": end_character}}

    def to_json(self, *, with_text: bool = True) -> dict[str, Any]:
        """For the protocol: ``uri``, ``path`` (display), ``range``, ``label``, ``title``, ``score``, ``text``."""
        out: dict[str, Any] = {"uri": self.uri, "path": self.display, "range": self.lsp_range(), "label": self.label,
                               "title": self.title, "score": round(self.score, 4)}
        if with_text:
            out["text"] = self.text
        return out


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


@dataclass(frozen=True, slots=True)
class _Entry:
    root: Path
    size: int
    mtime_ns: int | None
    """None while the indexed text is an editor buffer's rather than the file's."""
    digest: str
    spans: tuple[Span, ...]
    docs: tuple[int, ...]
    text: str | None
    """An editor buffer's text (None for a file indexed from disk)."""


@dataclass(frozen=True, slots=True)
class _Change:
    kind: Literal["disk", "text", "remove"]
    text: str = ""


_DISK = _Change("disk")
_REMOVE = _Change("remove")
_BATCH = 256
_PROGRESS_SECONDS = 0.2


class WorkspaceIndex:
    """The index of the files that ``policy`` admits under its roots.

    ``cache_dir`` (None: nothing is saved) receives one file per root. Call :meth:`build` at start
    and after the roots or the admission rules changed; the change methods from the disk and editor
    events; :meth:`close` at shutdown. All methods are thread-safe and, except :meth:`close`, return
    at once.
    """

    def __init__(self, policy: AdmissionPolicy, cache_dir: str | os.PathLike[str] | None = None,
                 options: IndexOptions | None = None) -> None:
        self.options = options or IndexOptions()
        self._policy = policy
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._fingerprint = _fingerprint(self.options)
        # the index, guarded by _lock
        self._lock = threading.Lock()
        self._bm25 = Bm25Index(self.options.bm25)
        self._entries: dict[str, _Entry] = {}
        self._doc_keys: list[str | None] = []  # by document id: the file and chunk of each document
        self._doc_spans: list[Span | None] = []
        self._bytes = 0
        self._chunked = 0
        self._dirty_roots: set[Path] = set()
        self._full_logged = False
        # the work queue, guarded by _cond; _loaded_roots is only touched by the index thread
        self._cond = threading.Condition()
        self._pending: dict[str, _Change] = {}
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._not_before: dict[str, float] = {}
        self._builds: list[tuple[Progress | None, Future[BuildReport]]] = []
        self._save_at: float | None = None
        self._busy = False
        self._stopping = False
        self._loaded_roots: set[Path] = set()
        self._thread = threading.Thread(target=self._run, name="coderag-index", daemon=True)
        self._thread.start()

    # --- requests -----------------------------------------------------------------------------------

    def set_policy(self, policy: AdmissionPolicy) -> None:
        """New admission rules or roots object; follow with :meth:`build` to apply them to indexed files."""
        with self._cond:
            self._policy = policy

    def build(self, progress: Progress | None = None) -> Future[BuildReport]:
        """Bring the index in line with the roots on disk, in the background: read the saved index of
        roots not read yet, index new and changed files, drop files that are gone or no longer
        admitted, then save. Files whose size and mtime are unchanged are not read again."""
        future: Future[BuildReport] = Future()
        with self._cond:
            self._builds.append((progress, future))
            self._cond.notify_all()
        return future

    def update_path(self, path: str | os.PathLike[str]) -> None:
        """A file (or a directory's files) was created or changed on disk, or an editor buffer was
        closed: index what is on disk. Refused or vanished files are dropped."""
        self._enqueue(path, _DISK)

    def update_text(self, path: str | os.PathLike[str], text: str) -> None:
        """An editor buffer's text (didOpen, didChange): index it instead of the file on disk until
        the next :meth:`update_path` of the same path. Cheap: the text is only queued."""
        self._enqueue(path, _Change("text", text))

    def remove_path(self, path: str | os.PathLike[str]) -> None:
        """A file or directory was deleted: drop it, or everything under it."""
        self._enqueue(path, _REMOVE)

    def move(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        """A file or directory moved: drop what was at ``src`` and index what is now at ``dst``."""
        self._enqueue(src, _REMOVE)
        self._enqueue(dst, _DISK)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every queued change and build is applied; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._pending or self._builds or self._busy), timeout)

    def close(self, *, save: bool = True) -> None:
        """Stop the index thread (queued changes are dropped: the next build finds them on disk)
        and save what changed."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        for _, future in self._builds:
            future.cancel()
        if save:
            self._save_dirty()

    def __enter__(self) -> WorkspaceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------------------

    def search(self, query: str, k: int = 10, exclude_paths: Iterable[str | os.PathLike[str]] = ()) -> list[Hit]:
        """The ``k`` chunks that best match ``query``, best first; chunks of ``exclude_paths``
        (e.g. the files already in the model's context) are left out. A file changed on disk since
        it was indexed is left out too, and queued for re-indexing."""
        query_terms = terms(query)
        if not query_terms or k <= 0:
            return []
        with self._lock:
            excluded = [doc for p in exclude_paths if (e := self._entries.get(_key(p))) is not None for doc in e.docs]
            ranked = [(score, self._doc_keys[doc], self._doc_spans[doc]) for doc, score in self._bm25.top(query_terms, k, excluded)]
            entries = {key: self._entries[key] for _, key, _ in ranked}
        policy = self._policy
        lines = {key: self._current_lines(key, entry) for key, entry in entries.items()}
        hits = []
        for score, key, (start, end, title) in ranked:
            if lines[key] is None:
                continue
            hits.append(Hit(Path(key), policy.display_path(key), start, end, title, "".join(lines[key][start:end]), score))
        return hits

    def __contains__(self, path: str | os.PathLike[str]) -> bool:
        with self._lock:
            return _key(path) in self._entries

    def chunks(self, path: str | os.PathLike[str]) -> list[Chunk]:
        """The indexed chunks of a file with their current text (empty if it is not indexed, or
        changed since)."""
        key = _key(path)
        with self._lock:
            entry = self._entries.get(key)
        lines = self._current_lines(key, entry) if entry is not None else None
        if entry is None or lines is None:
            return []
        return [Chunk(start, end, title, "".join(lines[start:end])) for start, end, title in entry.spans]

    def _current_lines(self, key: str, entry: _Entry) -> list[str] | None:
        """The lines of the indexed text of a file; None, with the file queued for re-indexing, if
        the file no longer holds that text."""
        if entry.text is not None:
            return split_lines(entry.text)
        data = read_file(key, self._policy.options.max_file_bytes)
        if data is not None and store.digest(data) == entry.digest:
            try:
                return split_lines(data.decode("utf-8-sig"))
            except UnicodeDecodeError:
                pass
        self.update_path(key)
        return None

    def stats(self) -> dict[str, int]:
        """Sizes, the changes waiting, and how many times a file was chunked and tokenized since start."""
        with self._lock:
            out = {"files": len(self._entries), "chunks": len(self._bm25), "bytes": self._bytes,
                   "terms": self._bm25.vocabulary_size, "chunked": self._chunked}
        with self._cond:
            out["pending"] = len(self._pending)
        return out

    # --- the queue ----------------------------------------------------------------------------------

    def _enqueue(self, path: str | os.PathLike[str], change: _Change) -> None:
        key = _key(path)
        with self._cond:
            if self._stopping:
                return
            if key not in self._pending:
                if len(self._pending) >= self.options.max_pending:
                    self._overflow()
                    return
                due = max(time.monotonic(), self._not_before.get(key, 0.0))
                self._due[key] = due
                heapq.heappush(self._heap, (due, next(self._seq), key))
            self._pending[key] = change
            self._cond.notify_all()

    def _overflow(self) -> None:
        """Too many distinct paths changed (called with ``_cond`` held): rescan instead."""
        logger.warning("more than %d files changed at once; rescanning the workspace instead of "
                       "following each change", self.options.max_pending)
        self._pending.clear()
        self._due.clear()
        self._heap.clear()
        if not self._builds:
            self._builds.append((None, Future()))

    def _take_ready(self, now: float) -> list[tuple[str, _Change]]:
        """Up to _BATCH changes that are due (called with ``_cond`` held)."""
        batch: list[tuple[str, _Change]] = []
        while self._heap and self._heap[0][0] <= now and len(batch) < _BATCH:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) != due:
                continue  # superseded entry
            del self._due[key]
            batch.append((key, self._pending.pop(key)))
            self._not_before[key] = now + self.options.min_update_interval
        if len(self._not_before) > self.options.max_pending:
            self._not_before = {k: t for k, t in self._not_before.items() if t > now}
        return batch

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._next_job()
                if job is None:
                    return
                self._busy = True
            try:
                job()
            except Exception:
                logger.exception("index update failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _next_job(self) -> Callable[[], None] | None:
        """Wait for the next thing to do (called with ``_cond`` held); None when stopping."""
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
                return self._save_dirty
            wake = [t for t in (self._heap[0][0] if self._heap else None, self._save_at) if t is not None]
            self._cond.wait(min(wake) - now if wake else None)
        return None

    def _apply(self, batch: list[tuple[str, _Change]]) -> None:
        for key, change in batch:
            try:
                if change.kind == "remove":
                    self._discard_under(key)
                elif change.kind == "text":
                    self._index_text(key, change.text)
                elif os.path.isdir(key):  # a directory appeared or moved in: its files
                    for path in self._policy.walk(key):
                        self._refresh(str(path))
                else:
                    self._refresh(key)
            except Exception:
                logger.exception("indexing %s failed", key)
        self._prepare()
        self._schedule_save()

    def _prepare(self, merge: bool = False) -> None:
        """Do the sorting that the next search would otherwise do. A merge is computed without the
        lock (this thread is the only writer), so searches go on meanwhile."""
        plan = self._bm25.plan_merge(force=merge)
        with self._lock:
            if plan is not None:
                self._bm25.apply_merge(plan)
            self._bm25.prepare()

    def _apply_ready(self) -> None:
        """Apply the changes that are due, from inside a build."""
        with self._cond:
            batch = self._take_ready(time.monotonic())
        if batch:
            self._apply(batch)

    def _schedule_save(self) -> None:
        with self._lock:
            dirty = bool(self._dirty_roots)
        if self._cache_dir is None or not dirty:
            return
        with self._cond:
            if self._save_at is None:
                self._save_at = time.monotonic() + self.options.save_delay

    # --- indexing (index thread) --------------------------------------------------------------------

    def _run_build(self, progress: Progress | None, future: Future[BuildReport]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            report = self._build(progress)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        future.set_result(report)

    def _build(self, progress: Progress | None) -> BuildReport:
        started = time.perf_counter()
        policy = self._policy
        roots = policy.roots
        with self._lock:
            outside = [key for key, entry in self._entries.items() if entry.root not in roots]
        for key in outside:
            self._discard(key)
        listed: list[tuple[str, Path]] = []
        for root in roots:
            for path in policy.walk(root):
                if len(listed) == self.options.max_files:
                    logger.warning("indexing the first %d files only (max_files)", len(listed))
                    break
                listed.append((str(path), root))
        saved = self._load_saved(roots)
        if progress is not None:
            progress(0, len(listed))
        counts: Counter[str] = Counter()
        last_report = time.monotonic()
        for done, (key, root) in enumerate(listed, 1):
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None and entry.mtime_ns is None:
                counts["kept"] += 1  # an editor buffer's text stays until the editor says otherwise
            else:
                counts[self._refresh(key, root, saved=saved.get(key))] += 1
            if done % 64 == 0:
                self._apply_ready()
            if progress is not None and (done == len(listed) or time.monotonic() - last_report > _PROGRESS_SECONDS):
                progress(done, len(listed))
                last_report = time.monotonic()
        keep = {key for key, _ in listed}
        with self._lock:
            gone = [key for key, entry in self._entries.items()
                    if key not in keep and not (entry.mtime_ns is None and policy.check_location(key))]
        for key in gone:
            self._discard(key)
        self._prepare(merge=True)
        with self._lock:
            files, chunks = len(self._entries), len(self._bm25)
        self._save_dirty()
        report = BuildReport(files, chunks, counts["indexed"], counts["reused"], len(outside) + len(gone) + counts["dropped"],
                             time.perf_counter() - started)
        logger.info("workspace index: %d files, %d chunks (%d indexed, %d unchanged since the last run, %d removed) in %.1fs",
                    report.files, report.chunks, report.indexed, report.reused, report.removed, report.seconds)
        return report

    def _load_saved(self, roots: Iterable[Path]) -> dict[str, FileRecord]:
        """Saved records, by absolute path, of the roots whose saved index was not read yet."""
        saved: dict[str, FileRecord] = {}
        if self._cache_dir is None:
            return saved
        for root in roots:
            if root in self._loaded_roots:
                continue
            self._loaded_roots.add(root)
            records = store.load(self._cache_dir, root, self._fingerprint, self._term_ids)
            if records is None:
                with self._lock:
                    self._dirty_roots.add(root)  # write a fresh one even if nothing changes
                continue
            for rel, record in records.items():
                saved[os.path.join(root, rel)] = record
        return saved

    def _term_ids(self, terms: Iterable[str]) -> np.ndarray:
        with self._lock:
            return self._bm25.term_ids(terms)

    def _refresh(self, key: str, root: Path | None = None, *, saved: FileRecord | None = None) -> str:
        """Index the file at ``key`` as it is on disk, reading it only if its size or mtime differ
        from what is indexed (or saved). ``root``: the file was listed by the admission policy's walk
        of that root, so its admission is not checked again. Returns what happened: indexed,
        reused, kept or dropped."""
        if root is None:
            root = self._policy.root_of(key)
            if root is None or not (self._policy.check_location(key) and self._policy.check_content(key)):
                return self._discard(key)
        try:
            st = os.stat(key)
        except OSError:
            return self._discard(key)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and (entry.size, entry.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return "kept"
        if saved is not None and (saved.size, saved.mtime_ns) == (st.st_size, st.st_mtime_ns) and self._install(key, root, saved, None):
            return "reused"
        data = read_file(key, self._policy.options.max_file_bytes)
        if data is None:
            return self._discard(key)
        size, mtime_ns, file_digest = len(data), st.st_mtime_ns, store.digest(data)
        if entry is not None and entry.digest == file_digest:
            with self._lock:  # same bytes (a touch, or the indexed buffer saved): note the new mtime
                if self._entries.get(key) is entry:
                    self._entries[key] = replace(entry, size=size, mtime_ns=mtime_ns, text=None)
                    self._dirty_roots.add(root)
            return "kept"
        if saved is not None and saved.digest == file_digest and self._install(
                key, root, replace(saved, size=size, mtime_ns=mtime_ns), None):
            return "reused"
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            logger.info("not indexing %s: not valid UTF-8", key)
            return self._discard(key)
        self._install(key, root, self._record(key, root, text, size, mtime_ns, file_digest), None)
        return "indexed"

    def _index_text(self, key: str, text: str) -> None:
        root = self._policy.root_of(key)
        if root is None or not (self._policy.check_location(key) and self._policy.check_text(key, text)):
            self._discard(key)
            return
        data = text.encode("utf-8", "surrogatepass")
        file_digest = store.digest(data)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry.digest == file_digest:
            return  # e.g. a file opened unmodified
        self._install(key, root, self._record(key, root, text, len(data), None, file_digest), text)

    def _record(self, key: str, root: Path, text: str, size: int, mtime_ns: int | None, file_digest: str) -> FileRecord:
        """Chunk and tokenize a file's text; each chunk also gets the words of the file's path."""
        self._chunked += 1
        chunks = chunk_text(key, text, self.options.chunking)
        path_terms = count_terms(os.path.relpath(key, root))
        per_chunk = []
        for chunk in chunks:
            counts = count_terms(chunk.text)
            for term, n in path_terms.items():
                counts[term] = counts.get(term, 0) + n
            per_chunk.append(counts)
        with self._lock:
            terms = [self._bm25.term_ids(counts) for counts in per_chunk]
        return FileRecord(size, mtime_ns, file_digest, tuple((c.start_line, c.end_line, c.title) for c in chunks),
                          np.concatenate([np.zeros(0, dtype=np.int32), *terms]),
                          np.fromiter((n for counts in per_chunk for n in counts.values()), dtype=np.float32),
                          np.cumsum([0, *map(len, terms)], dtype=np.int64))

    def _install(self, key: str, root: Path, record: FileRecord, text: str | None) -> bool:
        """Put a file's chunks in the index in place of its old ones (``text``: the editor buffer
        they come from); False if the index is full."""
        with self._lock:
            old = self._entries.get(key)
            if old is None and len(self._entries) >= self.options.max_files:
                if not self._full_logged:
                    logger.warning("workspace index full (%d files, max_files): further files are not indexed",
                                   len(self._entries))
                    self._full_logged = True
                return False
            if old is not None:
                self._forget(old)
            docs = tuple(self._bm25.add(record.terms, record.counts, record.offsets))
            for doc, span in zip(docs, record.spans):
                if doc >= len(self._doc_keys):
                    self._doc_keys += [None] * (doc + 1 - len(self._doc_keys))
                    self._doc_spans += [None] * (doc + 1 - len(self._doc_spans))
                self._doc_keys[doc], self._doc_spans[doc] = key, span
            self._entries[key] = _Entry(root, record.size, record.mtime_ns, record.digest, record.spans, docs, text)
            self._bytes += record.size - (old.size if old is not None else 0)
            self._dirty_roots.add(root)
            return True

    def _discard(self, key: str) -> Literal["dropped"]:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._forget(entry)
                self._bytes -= entry.size
                self._dirty_roots.add(entry.root)
                self._full_logged = False
        return "dropped"

    def _discard_under(self, key: str) -> None:
        """Drop a file, or every file under a directory."""
        prefix = os.path.join(key, "")
        with self._lock:
            keys = [key] if key in self._entries else [k for k in self._entries if k.startswith(prefix)]
        for k in keys:
            self._discard(k)

    def _forget(self, entry: _Entry) -> None:
        for doc in entry.docs:
            self._bm25.remove(doc)
            self._doc_keys[doc] = self._doc_spans[doc] = None

    # --- saving -------------------------------------------------------------------------------------

    def _save_dirty(self) -> None:
        """Write the saved index of every root that changed since it was last written. Runs on the
        index thread (or after it stopped), the only writer, so it reads the index without the lock."""
        if self._cache_dir is None:
            return
        with self._lock:
            roots = self._dirty_roots & set(self._policy.roots)
            self._dirty_roots -= roots
        for root in roots:
            entries = {os.path.relpath(key, root): e for key, e in self._entries.items() if e.root == root}
            terms, counts, offsets = self._bm25.postings([doc for e in entries.values() for doc in e.docs])
            files = {}
            first = 0
            for rel, e in entries.items():
                last = first + len(e.docs)
                a, b = offsets[first], offsets[last]
                files[rel] = FileRecord(e.size, e.mtime_ns, e.digest, e.spans, terms[a:b], counts[a:b], offsets[first:last + 1] - a)
                first = last
            try:
                store.save(self._cache_dir, root, self._fingerprint, self._bm25.term_names(), files)
            except OSError as exc:
                logger.warning("cannot save the workspace index of %s: %s", root, exc)


def read_file(path: str, max_bytes: int) -> bytes | None:
    """A file's bytes, None if it cannot be read or grew past ``max_bytes`` since it was admitted."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        logger.debug("cannot read %s: %s", path, exc)
        return None
    return data if len(data) <= max_bytes else None


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)


def _fingerprint(options: IndexOptions) -> str:
    """What the saved chunks and terms depend on; a saved index made with other values is not used."""
    basis = [store.FORMAT, asdict(options.chunking), identifiers.fingerprint()]
    return hashlib.sha256(json.dumps(basis).encode()).hexdigest()[:16]
