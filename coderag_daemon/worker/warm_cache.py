"""Warm restarts: the model's cache saved to disk and loaded again, so that a daemon started again on
a workspace (an editor restart, a crash, a reboot) does not decode its files again.

Saving and loading run on the model worker, like every use of the cache: a save is a memory copy
(the engine's `save_state`, tens of milliseconds), made once a preload has settled, at most every
`persist_interval_ms` and only if the cache changed; a writer thread then puts it on disk, so a
request never waits for the disk. A load happens before the first job after a model is loaded, and
again when the files change so much (a branch switch) that a saved state fits them better than the
cache does: the state whose leading files match the context best is chosen, and the next update
compares its tokens with the target like any cached tokens, so a change made while the daemon was
down costs what an edit costs.

A saved state's metadata lists its files in order with their contents' sha256 and tokens; the file
order of the first saved state is where the files opened again go (`FileOrder.prefer`), whatever
order the editor opens them in. Nothing here fails a job: a state that cannot be read or used is
logged and the cache starts cold; a directory that cannot be written turns saving off, said once.

A remote engine's cache lives in its server's slot, which the daemon cannot copy: with one, nothing
is saved or loaded (`_persists`), whatever the settings say.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..engine import ContextCache, EngineError
from ..engine.snapshot import model_digest, snapshot_key
from ..persistence.state_file import SavedState, StateFileError
from ..persistence.state_store import PersistenceUnavailable, StateStore, workspace_roots

if TYPE_CHECKING:
    from ..workspace.project import Project
    from .model_worker import Session

log = logging.getLogger(__name__)

MIB = 1 << 20
SWITCH_GAIN_TOKENS = 256
"""A saved state replaces the cache when its matching files hold this many more tokens than the
cache's matching prefix (loading costs a read of the file; decoding 256 tokens takes seconds)."""

FileDigest = tuple[str, str, int]
"""(absolute path, sha256 of the text, tokens) of a file of the context, in order."""


class Progress(Protocol):
    """Work-done progress of a load (the server's WorkProgress)."""

    def __call__(self, done: int, total: int) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class Restored:
    """A state loaded into the cache, for the status and the log."""

    tokens: int
    ms: float
    bytes: int
    saved_at: float

    def as_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "ms": round(self.ms, 1), "bytes": self.bytes, "savedAt": round(self.saved_at)}


def matching_tokens(saved: Sequence[Sequence[Any]], current: Sequence[FileDigest]) -> int:
    """Tokens of the leading files that `saved` (its metadata's files) and `current` have in common:
    same path, same text, same place."""
    total = 0
    for (path, digest, tokens), now in zip(saved, current, strict=False):
        if (path, digest) != now[:2]:
            break
        total += int(tokens)
    return total


class WarmCache:
    """Saves and loads the cache of one daemon. `restore_if_due`, `after_preload`, `switch_if_better`
    and `save_now` run on the model worker; `set_roots` and `configure` on the event loop (they only
    replace immutable values); the writer thread only writes what it is handed."""

    def __init__(
        self,
        store: StateStore,
        *,
        enabled: bool = True,
        interval_s: float = 60.0,
        on_restored: Callable[[Restored], None] = lambda r: None,
        on_saved: Callable[[dict[str, Any]], None] = lambda figures: None,
        progress: Callable[[], Progress] | None = None,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.interval_s = interval_s
        self._roots: tuple[str, ...] = ()
        self._on_restored = on_restored
        self.on_saved = on_saved
        """Hears the figures of each save, from the writer thread."""
        self._progress = progress
        self._cache_id: int | None = None
        """The cache a restore was tried for: a new one (a model loaded) is restored once."""
        self._cache_files: list[FileDigest] = []
        """What the cache holds, as of the last completed preload or load."""
        self._saved_tokens: int | None = None
        """hash of the tokens last saved or loaded: an unchanged cache is not saved again."""
        self._saved_files: list[FileDigest] = []
        """The files the last save or load held."""
        self._last_save = float("-inf")
        self._writer = _Writer(self)

    # --- on the event loop -------------------------------------------------------------------------

    def set_roots(self, roots: Sequence[Path]) -> None:
        self._roots = workspace_roots(roots)

    def configure(self, enabled: bool, interval_ms: int, budget_mib: int) -> None:
        self.enabled, self.interval_s = enabled, interval_ms / 1000
        self.store.budget_bytes = budget_mib * MIB

    def model_loaded(self, path: Path) -> None:
        """Hash the model file now, on a thread of its own (about a second for 500 MB), so that the
        first job, which compares saved states' keys, does not wait for it."""
        if self.enabled:
            threading.Thread(target=model_digest, args=(path,), name="coderag-model-digest", daemon=True).start()

    def saved_order(self) -> list[str]:
        """The file order of this workspace's newest saved state (any model), for `FileOrder.prefer`."""
        if not self.enabled or not self._roots:
            return []
        try:
            states = [s for s in self.store.list() if s.roots == self._roots]
        except OSError as exc:
            log.info("no saved cache states to read: %s", exc)
            return []
        newest = max(states, key=lambda s: s.created, default=None)
        return [str(f[0]) for f in newest.meta.get("files", [])] if newest is not None else []

    # --- on the model worker --------------------------------------------------------------------------

    def restore_if_due(self, session: Session, project: Project) -> None:
        """Before the first job on a new cache: load the saved state that fits the open files best."""
        if id(session.cache) == self._cache_id:
            return
        self._cache_id, self._cache_files, self._saved_files, self._saved_tokens = id(session.cache), [], [], None
        if not self._persists(session):
            return
        try:
            current = project.file_digests()
            best = max(
                self._candidates(session),
                key=lambda s: (matching_tokens(s.meta.get("files", []), current), s.created),
                default=None,
            )
            if best is not None:
                self._load(session, project, best, arrange=True)
        except Exception:  # the job goes on with a cold cache
            log.exception("loading the saved cache failed")

    def switch_if_better(self, session: Session, project: Project, cached: int) -> None:
        """The context's files changed while running (a branch switch): when a saved state matches
        them by more than `SWITCH_GAIN_TOKENS` beyond the `cached` tokens the cache keeps, save the
        cache if it holds unsaved work (so switching back finds it) and load that state."""
        if not self._persists(session):
            return
        current = project.file_digests()
        if matching_tokens(self._cache_files, current) + SWITCH_GAIN_TOKENS > sum(t for *_, t in current):
            return  # the cache already fits (almost) all of it: the common case, decided without the disk
        scored = [(matching_tokens(s.meta.get("files", []), current), s) for s in self._candidates(session)]
        gain, best = max(scored, key=lambda x: (x[0], x[1].created), default=(0, None))
        if best is None or gain < cached + SWITCH_GAIN_TOKENS:
            return
        self._save(session, project, self._cache_files)
        self._load(session, project, best, arrange=False)

    def after_preload(self, session: Session, project: Project) -> None:
        """A preload reached its target: the cache holds the files as they are now (up to the one
        being completed, whose window the request tail shows instead). Saved when the interval has
        passed and it changed, unless a request is waiting."""
        if not isinstance(session.cache, ContextCache):
            return
        self._cache_files = self._held(session, project)
        if (
            self._persists(session)
            and time.monotonic() - self._last_save >= self.interval_s
            and not session.others_waiting()
        ):
            self._save(session, project, self._cache_files)

    def save_now(self, session: Session, project: Project, timeout: float) -> None:
        """At shutdown: save what the cache holds if it changed, and wait for the disk (at most `timeout` s)."""
        if self._persists(session) and self._cache_id == id(session.cache):
            self._save(session, project, self._held(session, project))
        self._writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._writer.flush(timeout)
        self._writer.stop()

    # --- internals ---------------------------------------------------------------------------------

    def _persists(self, session: Session) -> bool:
        """Saving is on, there is a workspace, and the cache is one this process holds (not a server's)."""
        return self.enabled and bool(self._roots) and isinstance(session.cache, ContextCache)

    def _candidates(self, session: Session) -> list[SavedState]:
        assert isinstance(session.cache, ContextCache)  # `_persists`
        try:
            return self.store.candidates([Path(r) for r in self._roots], snapshot_key(session.cache))
        except OSError as exc:
            log.warning("cannot read saved cache states: %s", exc)
            return []

    def _load(self, session: Session, project: Project, state: SavedState, *, arrange: bool) -> None:
        t0 = time.perf_counter()
        total = int(state.meta.get("tokens", 0))
        progress = self._progress() if self._progress is not None else None
        if progress is not None:
            progress(0, total)
        try:
            tokens = session.cache.load_state(self.store.load(state))
        except (StateFileError, EngineError, OSError) as exc:
            log.warning("the saved cache %s was not loaded: %s", state.path, exc)
            return
        finally:
            if progress is not None:
                progress(total, total)
                progress.finish()
        self._cache_files = self._saved_files = [(str(p), str(d), int(t)) for p, d, t in state.meta.get("files", [])]
        self._saved_tokens = hash(tuple(session.cache.tokens))
        if arrange:
            project.prefer_order([p for p, _, _ in self._cache_files])
        restored = Restored(tokens, (time.perf_counter() - t0) * 1000, state.size, state.created)
        log.info(
            "loaded the saved cache of %s: %d tokens, %.1f MB in %.0f ms",
            ", ".join(state.roots),
            tokens,
            state.size / 1e6,
            restored.ms,
        )
        self._on_restored(restored)

    @staticmethod
    def _held(session: Session, project: Project) -> list[FileDigest]:
        """The files the cache's completion sequence holds now, as a saved state describes them."""
        return project.files_held(lambda segments: session.cache.cached_prefix(segments, 0))

    def _save(self, session: Session, project: Project, files: list[FileDigest]) -> None:
        """Save the cache as holding `files`, unless it holds nothing new: the same tokens as last
        time, or only some of the files the last save held (a completion's tail in the place of the
        file being edited: the save after the preload was the better one)."""
        cache = session.cache
        assert isinstance(cache, ContextCache)  # `_persists`
        fingerprint = hash(tuple(cache.tokens))
        if not files or fingerprint == self._saved_tokens or _fewer(files, self._saved_files):
            return
        t0 = time.perf_counter()
        try:
            payload = cache.save_state()
            key = snapshot_key(cache)
        except EngineError as exc:
            log.warning("the cache could not be saved: %s", exc)
            return
        self._saved_tokens, self._saved_files, self._last_save = fingerprint, files, time.monotonic()
        meta = {
            "files": [list(f) for f in files],
            "tokens": len(cache.tokens),
            "model": Path(cache.model.path).name,
            "strategy": cache.strategy,
        }
        self._writer.put(self._roots, key, meta, payload, (time.perf_counter() - t0) * 1000)

    def _unavailable(self, exc: PersistenceUnavailable) -> None:
        """From the writer: saving is impossible here; the daemon goes on without it."""
        if self.enabled:
            log.warning("%s; the cache is no longer saved (restarts start cold)", exc)
        self.enabled = False


def _fewer(files: list[FileDigest], before: list[FileDigest]) -> bool:
    """`files` are the first of `before`, and not all of them."""
    return len(files) < len(before) and before[: len(files)] == files


class _Writer:
    """Writes saved states on a thread of its own; a newer state waiting replaces an older one."""

    def __init__(self, owner: WarmCache) -> None:
        self._owner = owner
        self._cond = threading.Condition()
        self._pending: tuple[tuple[str, ...], dict[str, Any], dict[str, Any], bytes, float] | None = None
        self._busy = self._stopping = False
        self._thread: threading.Thread | None = None

    def put(
        self, roots: tuple[str, ...], key: dict[str, Any], meta: dict[str, Any], payload: bytes, snapshot_ms: float
    ) -> None:
        """Write `payload` (copied from the cache in `snapshot_ms` on the worker)."""
        with self._cond:
            self._pending = (roots, key, meta, payload, snapshot_ms)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="coderag-cache-writer", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float) -> None:
        """Wait until what was handed over is on disk (or `timeout` s passed)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending is not None or self._busy) and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._pending is None:
                    return
                (roots, key, meta, payload, snapshot_ms), self._pending = self._pending, None
                self._busy = True
            t0 = time.perf_counter()
            try:
                state = self._owner.store.save([Path(r) for r in roots], key, meta, payload)
                write_ms = (time.perf_counter() - t0) * 1000
                log.info(
                    "saved the cache (%d tokens, %.1f MB): copied in %.0f ms, written in %.0f ms",
                    meta["tokens"],
                    state.size / 1e6,
                    snapshot_ms,
                    write_ms,
                )
                self._owner.on_saved(
                    {
                        "tokens": meta["tokens"],
                        "bytes": state.size,
                        "snapshotMs": round(snapshot_ms, 1),
                        "writeMs": round(write_ms, 1),
                    }
                )
            except PersistenceUnavailable as exc:
                self._owner._unavailable(exc)
            except Exception:  # a bug must not end the thread that every later save needs
                log.exception("saving the cache failed")
            finally:
                del payload
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
