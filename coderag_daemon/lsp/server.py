"""The daemon's state behind the LSP handlers: the project, the model worker, the workspace index
and the disk watcher, and how a setting, a folder or a file change reaches each. Custom methods
are listed in methods.py and documented in docs/PROTOCOL.md; the handlers are in handlers.py."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer

from .. import __version__, default_model
from ..engine.options import MIB
from ..index import WorkspaceIndex
from ..index.store import default_cache_dir
from ..options import Options, Reload, merge, reloads
from ..persistence.state_store import StateStore
from ..prompting.prompts import detect_layout
from ..worker import jobs
from ..worker.model_worker import ModelUnavailable, ModelWorker, Status
from ..worker.warm_cache import WarmCache
from ..workspace.admission import is_gitignore
from ..workspace.documents import Document
from ..workspace.project import Project
from ..workspace.watcher import DiskWatcher
from . import methods
from .completions import InlineCompletions
from .converter import plain_json_converter
from .params import JsonRpcRequestFailed
from .progress import LoadingProgress, WorkProgress, supports_progress
from .protocol import DaemonProtocol

log = logging.getLogger(__name__)

SAVE_TIMEOUT = 20.0
"""Seconds a shutdown waits for the cache to reach the disk (a few hundred MB at most)."""


class CoderagServer(LanguageServer):
    """The daemon's state; event-loop state is touched only on the event loop (`call_soon` hands
    calls from the worker, watcher and index threads over)."""

    protocol: DaemonProtocol

    def __init__(self, options: Options) -> None:
        super().__init__(
            "coderag-daemon",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=DaemonProtocol,
            converter_factory=plain_json_converter,
        )
        self.options = options
        self.project = Project(options)
        self.warm = WarmCache(
            StateStore(budget_bytes=options.persist_budget_mib * MIB),
            enabled=options.persist_cache,
            interval_s=options.persist_interval_ms / 1000,
            on_restored=lambda restored: self.worker.report(restored=restored.as_json()),
            on_saved=lambda figures: self.worker.report(saved=figures),
            progress=lambda: WorkProgress(self, "coderag: loading the saved cache"),
        )
        self.worker = ModelWorker(
            on_status=self._status_changed,
            on_loaded=self._model_loaded,
            before_job=lambda session: self.warm.restore_if_due(session, self.project),
        )
        self.watcher: DiskWatcher | None = None
        self.index = WorkspaceIndex(self.project.admission, default_cache_dir())
        self._index_build: Future[Any] | None = None
        self.completions = InlineCompletions(self)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loading = LoadingProgress(self)
        self._shown_error: str | None = None

    # --- model --------------------------------------------------------------------------------

    def load_model(self) -> None:
        path = self.options.model
        if path is None:
            try:
                path = str(default_model.resolve_default())
            except default_model.ModelInstallError as exc:
                self.worker.fail(str(exc))
                return
        self.worker.load(path, self.options.engine_options())

    def _model_loaded(self, model: Any) -> None:
        """On the worker thread, once a model is in: lay the context out for its vocabulary, and
        warm the cache with the files already open."""
        self.project.set_layout(detect_layout(model, self.options.prompt_options()))
        if not self.options.remote:  # a remote engine's cache is its server's: nothing to save or load
            self.warm.model_loaded(model.path)
        self.call_soon(self.schedule_preload)

    # --- talking to the client from any thread --------------------------------------------------

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(fn, *args)

    def notify(self, method: str, params: Any) -> None:
        self.call_soon(self.protocol.notify, method, params)

    def show(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        self.call_soon(self.window_show_message, types.ShowMessageParams(type=kind, message=f"coderag: {message}"))

    def _status_changed(self, status: Status) -> None:
        """From the worker's thread (or the event loop): handled on the event loop, in order."""
        self.call_soon(self._publish_status, status)

    def _publish_status(self, status: Status) -> None:
        payload = status.as_dict()
        with self.project.lock:
            payload["files"] = len(self.project.context) if self.project.context is not None else 0
        self.protocol.notify(methods.STATUS, payload)
        self.loading.status(status.state)
        if status.state == "error" and status.error and status.error != self._shown_error:
            self.show(status.error, types.MessageType.Error)  # once per distinct error, not per status
        self._shown_error = status.error

    # --- requests to the worker -------------------------------------------------------------------

    async def run(self, fn: Callable[[Any], Any], label: str, cancel: threading.Event | None = None) -> Any:
        """Run a job on the model worker; a $/cancelRequest stops it within one batch or token."""
        cancel = cancel or threading.Event()
        progress = WorkProgress(self, f"coderag: {label}")
        try:
            future = self.worker.submit(fn, label=label, cancel=cancel, progress=progress)
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            cancel.set()
            raise
        except ModelUnavailable as exc:
            raise JsonRpcRequestFailed(str(exc)) from exc
        except jobs.Interrupted as exc:
            raise JsonRpcRequestCancelled("cancelled") from exc
        finally:
            progress.finish()

    def schedule_preload(self) -> None:
        """The context changed (or a completion left part of it out): once things are quiet, bring
        the cache to what the next request is expected to need, a completion at the cursor of the
        last edit or completion, or, before there is one, the files alone. On the event loop."""
        cursor = self.project.cursor
        doc = self.project.documents.get(cursor.uri) if cursor is not None else None
        target: Callable[[], list[list[int]]]
        if cursor is not None and doc is not None:
            window = self.completions.window_at(cursor.uri, doc, cursor.offset)
            definitions = self.completions.definitions(doc, window)
            target = functools.partial(jobs.completion_target, self.project, doc, window, self.options, definitions)
        elif self.project.context_paths():
            target = self.project.segments
        else:
            return
        progress = WorkProgress(self, "coderag: preloading", resumes=True)
        job = functools.partial(jobs.preload, project=self.project, target=target, done=progress.finish, warm=self.warm)
        self.worker.schedule_preload(job, self.options.preload_delay_ms / 1000, progress=progress)

    # --- configuration ------------------------------------------------------------------------------

    def configure(self, raw: Any, *, initial: bool) -> None:
        new, errors = merge(self.options, raw)
        for error in errors:
            self.show(error, types.MessageType.Warning)
        old, self.options = self.options, new
        self.warm.configure(new.persist_cache, new.persist_interval_ms, new.persist_budget_mib)
        todo = reloads(old, new)
        if Reload.PROJECT in todo:
            self.project.reconfigure(new)
        if Reload.ADMISSION in todo:  # new rules for which files may be read: the watcher and the index follow them
            self.restart_watcher()
            if not initial:
                self.build_index()
        if not initial and Reload.ENGINE in todo:
            self.load_model()

    # --- workspace --------------------------------------------------------------------------------

    def initialize(self, roots: list[Path], settings: Any) -> None:
        """The session's first message: its workspace folders and settings, on the event loop."""
        self.loop = asyncio.get_running_loop()
        self._set_roots([r for r in roots if r.is_dir()])
        self.configure(settings, initial=True)
        self.project.prefer_order(self.warm.saved_order())  # before the editor opens the files again

    async def initialized(self) -> None:
        """The client is ready: watch, index and load the model at once; the model's loading never
        waits for the client to accept a progress."""
        logging.getLogger("coderag_daemon").addHandler(ClientLogHandler(self))
        self.restart_watcher()
        self.build_index()
        self.load_model()
        if supports_progress(self):
            await self.loading.begin()

    def change_roots(self, added: list[Path], removed: list[Path]) -> None:
        """Workspace folders added or removed: the context, the watcher and the index follow them."""
        roots = (set(self.project.admission.roots) - set(removed)) | {p for p in added if p.is_dir()}
        self._set_roots(sorted(roots))
        self.restart_watcher()
        self.build_index()

    def _set_roots(self, roots: list[Path]) -> None:
        self.project.set_roots(roots)
        self.warm.set_roots(self.project.admission.roots)

    def build_index(self) -> None:
        """Bring the workspace index in line with the roots and admission rules, in the background."""
        self.index.set_policy(self.project.admission)
        progress = WorkProgress(self, "coderag: indexing workspace", threshold=1, unit="files")
        self._index_build = self.index.build(progress)
        self._index_build.add_done_callback(lambda _: progress.finish())

    @property
    def indexing(self) -> bool:
        return self._index_build is not None and not self._index_build.done()

    def index_document(self, doc: Document) -> None:
        """An editor buffer's text is what the index shows of its file until the buffer is closed."""
        if doc.path is not None:
            self.index.update_text(doc.path, doc.text)

    def restart_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if not self.project.admission.roots:
            self.watcher = None
            return
        project = self.project
        self.watcher = DiskWatcher(
            project.admission,
            on_change=self._disk(project.disk_changed, self.index.update_path),
            on_delete=self._disk(project.disk_deleted, self.index.remove_path),
            on_move=self._disk(project.disk_moved, self.index.move),
        )
        self.watcher.start()

    def _disk(self, handler: Callable[..., bool], index: Callable[..., None]) -> Callable[..., None]:
        def on_event(*paths: str) -> None:
            if handler(*paths):
                self.call_soon(self.schedule_preload)
            index(*paths)
            if any(is_gitignore(p) for p in paths):
                self.call_soon(self.build_index)  # new rules: the index drops the files they refuse
            self.call_soon(self.completions.forget_shown)  # the event loop's, like everything but the project and index
            log.info("changed on disk: %s", " -> ".join(paths))

        return on_event

    # --- the daemon's own requests ---------------------------------------------------------------

    async def search(self, query: str, limit: int) -> dict[str, Any]:
        """The index's best chunks for `query`, and whether the index is still being built."""
        if not 1 <= limit <= 100:
            raise JsonRpcInvalidParams(f"limit must be between 1 and 100, got {limit}")
        indexing = self.indexing
        hits = await asyncio.to_thread(self.index.search, query, limit)  # reads the files it returns
        return {
            "indexing": indexing,
            "files": self.index.stats()["files"],
            "results": [hit.to_json(with_text=True) for hit in hits],
        }

    async def describe_context(self) -> dict[str, Any]:
        """The files as a chat lays them out (all of them), and what the cache holds of them."""

        def describe(session: Any) -> dict[str, Any]:  # segments() also tokenizes pending files
            cached = session.cache.cached_prefix(self.project.segments())
            return {
                "files": self.project.describe(cached),
                "tokensCached": session.cache.cells_used,
                "nCtx": session.cache.n_ctx,
            }

        result: dict[str, Any] = await self.run(describe, label="context")
        return result

    async def clear_cache(self) -> None:
        self.completions.forget_shown()
        await self.run(lambda session: session.cache.clear(), label="clear cache")

    def stop(self) -> None:
        """At shutdown: the cache is saved (bounded in time), then every thread ends. Without a
        model in place (none asked for yet, loading, failed) there is nothing to save, and a job
        would only wait for one."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.warm.enabled and self.worker.status().state in ("ready", "busy", "preloading"):
            try:
                self.worker.submit(
                    lambda session: self.warm.save_now(session, self.project, timeout=SAVE_TIMEOUT), label="save"
                ).result(timeout=SAVE_TIMEOUT + 5)
            except Exception as exc:  # the save is cut short: the previous saved state stays
                log.debug("no cache saved at shutdown: %s", exc)
        self.warm.close()
        self.worker.stop()
        self.index.close()


class ClientLogHandler(logging.Handler):
    """Daemon events at INFO and above go to the editor's log as window/logMessage."""

    _LEVELS = {
        logging.ERROR: types.MessageType.Error,
        logging.WARNING: types.MessageType.Warning,
        logging.INFO: types.MessageType.Info,
    }

    def __init__(self, ls: CoderagServer) -> None:
        super().__init__(logging.INFO)
        self.ls = ls

    def emit(self, record: logging.LogRecord) -> None:
        kind = self._LEVELS.get(record.levelno, types.MessageType.Error)
        self.ls.call_soon(self.ls.window_log_message, types.LogMessageParams(type=kind, message=self.format(record)))
