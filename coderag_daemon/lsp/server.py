"""The LSP server: thin handlers that turn protocol messages into calls on the project, the worker
and the request jobs, and their results back into protocol types. Custom methods are listed in
methods.py and documented in docs/PROTOCOL.md."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import uuid
from concurrent.futures import Future
from typing import Any, Callable

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer

from .. import __version__, default_model
from ..worker import jobs
from . import methods
from ..workspace.admission import is_gitignore
from ..prompting.completion import TypeThroughCache, WindowStarts
from ..workspace.documents import Document, DocumentError, TextChange, uri_to_path
from ..index import RetrievalOptions, WorkspaceIndex, retrieve
from ..index.store import default_cache_dir
from ..options import Options, merge
from ..workspace.project import Project
from ..prompting.prompts import detect_layout
from .protocol import DaemonProtocol
from ..workspace.watcher import DiskWatcher
from ..worker.model_worker import ModelUnavailable, ModelWorker, Status

log = logging.getLogger("coderag_daemon.lsp.server")

# Settings that need a new llama context when they change.
_ENGINE_SETTINGS = ("model", "n_ctx", "threads", "checkpoint_interval", "checkpoint_memory_mib")
_PROJECT_SETTINGS = {"ignore_globs", "max_file_kib", "n_ctx", "context_tokens", "retrieval_tokens", "max_chat_tokens",
                     "max_completion_tokens"}
"""What the file context's rules and budget depend on (the budget keeps room in n_ctx for a request)."""


class CoderagServer(LanguageServer):
    """Holds the daemon's state; the handlers below only translate."""

    def __init__(self, options: Options) -> None:
        super().__init__("coderag-daemon", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
                         protocol_cls=DaemonProtocol)  # answers malformed messages as JSON-RPC asks
        self.options = options
        self.project = Project(options)
        self.worker = ModelWorker(on_status=self._status_changed, on_loaded=self._model_loaded)
        self.watcher: DiskWatcher | None = None
        self.index = WorkspaceIndex(self.project.admission, default_cache_dir())
        self._index_build: Future[Any] | None = None
        self.shown = TypeThroughCache()
        self.windows = WindowStarts()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._completion_cancel: dict[str, threading.Event] = {}
        self._loading_progress: str | None = None  # these two on the event loop only
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

    async def report_loading(self) -> None:
        """Work-done progress for the model's loading, unless the client refuses it or the loading
        ended while it was being created. On the event loop, as is `_publish_status`, which ends it."""
        token = str(uuid.uuid4())
        try:
            await self.work_done_progress.create_async(token)
        except Exception as exc:  # the client may refuse progress; loading goes on regardless
            log.debug("no progress for model loading: %s", exc)
            return
        if self.worker.status().state == "loading":
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="coderag: loading model"))
            self._loading_progress = token

    def _model_loaded(self, model: Any) -> None:
        """On the worker thread, once a model is in: lay the context out for its vocabulary, and
        warm the cache with the files already open."""
        self.project.set_layout(detect_layout(model, self.options.prompt_options()))
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
        if status.state != "loading" and self._loading_progress is not None:
            token, self._loading_progress = self._loading_progress, None
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=status.state))
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
        if cursor is not None and doc is not None:
            window = self.windows.window(cursor.uri, doc.text, min(cursor.offset, len(doc.text)))
            target = functools.partial(jobs.completion_target, self.project, doc, window)
        elif self.project.context_paths():
            target = self.project.segments
        else:
            return
        progress = WorkProgress(self, "coderag: preloading", resumes=True)
        self.worker.schedule_preload(functools.partial(jobs.preload, project=self.project, target=target, done=progress.finish),
                                     self.options.preload_delay_ms / 1000, progress=progress)

    # --- configuration ------------------------------------------------------------------------------

    def configure(self, raw: Any, *, initial: bool) -> None:
        new, errors = merge(self.options, raw)
        for error in errors:
            self.show(error, types.MessageType.Warning)
        old, self.options = self.options, new
        changed = {f.name for f in dataclasses.fields(Options) if getattr(old, f.name) != getattr(new, f.name)}
        admission = changed & {"ignore_globs", "max_file_kib"}
        if changed & _PROJECT_SETTINGS:
            self.project.reconfigure(new)
        if admission:  # new rules for which files may be read: the watcher and the index follow them
            self.restart_watcher()
            if not initial:
                self.build_index()
        if not initial and changed & set(_ENGINE_SETTINGS):
            self.load_model()

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
        self.watcher = DiskWatcher(project.admission, on_change=self._disk(project.disk_changed, self.index.update_path),
                                   on_delete=self._disk(project.disk_deleted, self.index.remove_path),
                                   on_move=self._disk(project.disk_moved, self.index.move))
        self.watcher.start()

    def _disk(self, handler: Callable[..., bool], index: Callable[..., None]) -> Callable[..., None]:
        def on_event(*paths: str) -> None:
            if handler(*paths):
                self.call_soon(self.schedule_preload)
            index(*paths)
            if any(is_gitignore(p) for p in paths):
                self.call_soon(self.build_index)  # new rules: the index drops the files they refuse
            self.call_soon(self.shown.clear)  # the event loop's, like everything but the project and index
            log.info("changed on disk: %s", " -> ".join(paths))
        return on_event


class WorkProgress:
    """Work-done progress ($/progress) for work on more than `threshold` units: a prefill's tokens
    (called from the worker thread after every batch), an index build's files (from the index thread).

    The progress is created on the client only once the work turns out to be long, and reports wait
    until the client has accepted it. Its state lives on the event loop: other threads hand their
    calls over. With `resumes` (a preload, which goes on after it gave way), work reported after
    `finish` begins a new one; otherwise it is the rest of a cancelled job's batch, and ignored."""

    def __init__(self, ls: CoderagServer, title: str, threshold: int = 1024, unit: str = "tokens",
                 resumes: bool = False) -> None:
        self.ls, self.title, self.threshold, self.unit, self.resumes = ls, title, threshold, unit, resumes
        self.token: str | None = None
        self.ready = self.finished = False

    def __call__(self, done: int, total: int) -> None:
        """From any thread."""
        if total >= self.threshold and _supports_progress(self.ls):
            self.ls.call_soon(self._update, done, total)

    def _update(self, done: int, total: int) -> None:
        if self.finished and not self.resumes:
            return
        if self.token is None:
            self.token, self.finished = str(uuid.uuid4()), False
            asyncio.ensure_future(self._begin())
        elif self.ready:
            report = types.WorkDoneProgressReport(message=f"{done} of {total} {self.unit}", percentage=100 * done // total)
            self.ls.work_done_progress.report(self.token, report)

    async def _begin(self) -> None:
        try:
            await self.ls.work_done_progress.create_async(self.token)
        except Exception as exc:  # a client may refuse; the prefill goes on regardless
            log.debug("progress refused: %s", exc)
            return
        self.ls.work_done_progress.begin(self.token, types.WorkDoneProgressBegin(title=self.title, percentage=0))
        self.ready = True
        if self.finished:
            self._finish()

    def finish(self) -> None:
        """From any thread; the end is sent once, on the event loop."""
        self.ls.call_soon(self._finish)

    def _finish(self) -> None:
        self.finished = True
        if self.ready:
            self.ready = False
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd())
            self.token = None


def _supports_progress(ls: CoderagServer) -> bool:
    window = ls.client_capabilities.window
    return window is not None and bool(window.work_done_progress)


class JsonRpcRequestFailed(JsonRpcException):
    """A request that could not be served (no model, a model error): JSON-RPC RequestFailed."""

    CODE = -32803
    MESSAGE = "Request failed"


def plain(value: Any) -> Any:
    """pygls hands custom-method params over as namedtuples; handlers read plain dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _param(params: Any, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    value = params.get(name) if isinstance(params, dict) else None
    if value is None:
        if required:
            raise JsonRpcInvalidParams(f"missing parameter {name!r}")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise JsonRpcInvalidParams(f"parameter {name!r} has the wrong type ({type(value).__name__})")
    return value


def _text(params: Any, name: str) -> str:
    """A required string parameter with something in it."""
    value = _param(params, name, str)
    if not value.strip():
        raise JsonRpcInvalidParams(f"the {name} is empty")
    return value


def _position(value: Any, name: str) -> tuple[int, int]:
    if not (isinstance(value, dict) and all(isinstance(value.get(k), int) and value[k] >= 0 for k in ("line", "character"))):
        raise JsonRpcInvalidParams(f"parameter {name!r} must be {{line, character}} with non-negative numbers")
    return value["line"], value["character"]


def build_server(options: Options) -> CoderagServer:
    server = CoderagServer(options)

    @server.feature(types.INITIALIZE)
    def initialize(ls: CoderagServer, params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_running_loop()
        roots = [uri_to_path(f.uri) for f in params.workspace_folders or []]
        if not roots and params.root_uri:
            roots = [uri_to_path(params.root_uri)]
        ls.project.set_roots([r for r in roots if r is not None and r.is_dir()])
        ls.configure(plain(params.initialization_options), initial=True)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: CoderagServer, params: types.InitializedParams) -> None:
        logging.getLogger("coderag_daemon").addHandler(_ClientLogHandler(ls))
        ls.restart_watcher()
        ls.build_index()
        ls.load_model()  # at once: the model's loading never waits for the client to accept a progress
        if _supports_progress(ls):
            await ls.report_loading()

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CoderagServer, params: None) -> None:
        if ls.watcher is not None:
            ls.watcher.stop()
        ls.worker.stop()
        ls.index.close()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: CoderagServer, params: types.DidChangeConfigurationParams) -> None:
        settings = plain(params.settings)
        if isinstance(settings, dict) and isinstance(settings.get("coderag"), dict):
            settings = settings["coderag"]
        ls.configure(settings, initial=False)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_folders(ls: CoderagServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        roots = {r for r in ls.project.admission.roots}
        roots -= {uri_to_path(f.uri) for f in params.event.removed}
        roots |= {p for f in params.event.added if (p := uri_to_path(f.uri)) is not None and p.is_dir()}
        ls.project.set_roots(sorted(roots))
        ls.restart_watcher()
        ls.build_index()

    # --- documents ------------------------------------------------------------------------------------

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CoderagServer, params: types.DidOpenTextDocumentParams) -> None:
        d = params.text_document
        doc = ls.project.opened(d.uri, d.text, d.version, d.language_id)
        ls.index_document(doc)
        if ls.project.holds(doc):
            ls.schedule_preload()

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CoderagServer, params: types.DidChangeTextDocumentParams) -> None:
        d = params.text_document
        try:
            doc = ls.project.changed(d.uri, d.version, [TextChange.from_lsp(c) for c in params.content_changes])
        except DocumentError as exc:
            log.warning("edit of %s refused: %s", d.uri, exc)
            return
        ls.index_document(doc)
        ls.schedule_preload()

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.TextDocumentSaveRegistrationOptions(include_text=True))
    def did_save(ls: CoderagServer, params: types.DidSaveTextDocumentParams) -> None:
        try:
            ls.project.saved(params.text_document.uri, params.text)
        except DocumentError as exc:
            log.warning("save of %s ignored: %s", params.text_document.uri, exc)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CoderagServer, params: types.DidCloseTextDocumentParams) -> None:
        path = uri_to_path(params.text_document.uri)
        try:
            ls.project.closed(params.text_document.uri)
        except DocumentError as exc:
            log.warning("close of %s ignored: %s", params.text_document.uri, exc)
            return
        ls.windows.forget(params.text_document.uri)
        if path is not None:
            ls.index.update_path(path)  # the file on disk is what counts again

    # --- completion -------------------------------------------------------------------------------

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: CoderagServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        uri = params.text_document.uri
        doc = ls.project.documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"unknown document {uri}: send textDocument/didOpen first")
        try:
            offset = doc.offset_at((params.position.line, params.position.character))
        except DocumentError as exc:
            raise JsonRpcInvalidParams(str(exc)) from exc
        before, after = doc.text[:offset], doc.text[offset:]
        cached = ls.shown.lookup(uri, before, after)
        if cached is not None:
            return _items(cached, params.position)
        window = ls.windows.window(uri, doc.text, offset)
        ls.project.completion_asked(uri, offset)
        if ls.worker.preload_pending():
            ls.schedule_preload()  # waiting or under way: aimed at this completion now, not at the old guess
        previous = ls._completion_cancel.pop(uri, None)
        if previous is not None:
            previous.set()  # a newer request for the same document supersedes it
        cancel = ls._completion_cancel[uri] = threading.Event()
        outcome: jobs.Outcome = await ls.run(
            functools.partial(jobs.complete, project=ls.project, doc=doc, window=window, options=ls.options),
            label="completion", cancel=cancel)
        ls._completion_cancel.pop(uri, None)
        if outcome.left_out:
            ls.schedule_preload()  # the files it left out, for the next completion
        ls.shown.remember(uri, before, after, outcome.text)
        ls.worker.report_request({"kind": "completion", **outcome.as_stats()})
        log.info("completion: %s", outcome.as_stats())
        return _items(outcome.text, params.position)

    # --- custom methods -----------------------------------------------------------------------------

    @server.feature(methods.CHAT)
    async def chat(ls: CoderagServer, params: Any) -> dict[str, Any]:
        params = plain(params)
        question = _text(params, "question")
        history = _param(params, "history", list, required=False) or []
        if not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str) for m in history):
            raise JsonRpcInvalidParams("history must be a list of {role: 'user'|'assistant', content: string}")
        token = _param(params, "token", (str, int), required=False)
        note, selected = _chat_note(ls, params)
        messages = [*history, {"role": "user", "content": question}]

        cancel = threading.Event()

        def on_text(delta: str) -> None:  # on the worker thread
            if token is not None:
                ls.call_soon(send_delta, delta)

        def send_delta(delta: str) -> None:  # on the event loop, where a cancel is seen before its reply goes out
            if not cancel.is_set():
                ls.protocol.notify(methods.CHAT_DELTA, {"token": token, "delta": delta})

        def find(count_tokens: Any, in_context: frozenset[str], budget: int) -> Any:
            return retrieve(ls.index, f"{question}\n{selected}", count_tokens, exclude_paths=in_context,
                            options=RetrievalOptions(token_budget=budget))

        outcome: jobs.Outcome = await ls.run(
            functools.partial(jobs.chat, project=ls.project, messages=messages, note=note, options=ls.options,
                              on_text=on_text, retrieve=find),
            label="chat", cancel=cancel)
        ls.worker.report_request({"kind": "chat", **outcome.as_stats()})
        log.info("chat: %s", outcome.as_stats())
        sources = outcome.retrieved.sources_json() if outcome.retrieved is not None else []
        if token is not None:
            ls.notify(methods.CHAT_DELTA, {"token": token, "delta": "", "done": True, "sources": sources})
        return {"answer": outcome.text, "stats": outcome.as_stats(), "sources": sources}

    @server.feature(methods.SEARCH)
    async def search(ls: CoderagServer, params: Any) -> dict[str, Any]:
        params = plain(params)
        query = _text(params, "query")
        limit = _param(params, "limit", int, required=False)
        limit = 20 if limit is None else limit
        if not 1 <= limit <= 100:
            raise JsonRpcInvalidParams(f"limit must be between 1 and 100, got {limit}")
        indexing = ls.indexing
        hits = await asyncio.to_thread(ls.index.search, query, limit)  # reads the files it returns
        return {"indexing": indexing, "files": ls.index.stats()["files"],
                "results": [hit.to_json(with_text=True) for hit in hits]}

    @server.feature(methods.CONTEXT)
    async def context(ls: CoderagServer, params: Any) -> dict[str, Any]:
        def describe(session: Any) -> dict[str, Any]:
            # the files as a chat lays them out (all of them); segments() also tokenizes pending files
            cached = session.cache.cached_prefix(ls.project.segments())
            return {"files": ls.project.describe(cached), "tokensCached": session.cache.cells_used,
                    "nCtx": session.cache.n_ctx}
        return await ls.run(describe, label="context")

    @server.feature(methods.CLEAR_CACHE)
    async def clear_cache(ls: CoderagServer, params: Any) -> dict[str, Any]:
        ls.shown.clear()
        await ls.run(lambda session: session.cache.clear(), label="clear cache")
        return {}

    @server.feature(methods.DOCUMENT_TEXT)
    def document_text(ls: CoderagServer, params: Any) -> dict[str, Any]:
        params = plain(params)
        uri = _param(params, "uri", str)
        doc = ls.project.documents.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"unknown document {uri}")
        return {"text": doc.text, "version": doc.version}

    return server


def _items(text: str, position: types.Position) -> types.InlineCompletionList:
    if not text:
        return types.InlineCompletionList(items=[])
    return types.InlineCompletionList(items=[types.InlineCompletionItem(
        insert_text=text, range=types.Range(start=position, end=position))])


def _chat_note(ls: CoderagServer, params: dict[str, Any]) -> tuple[str | None, str]:
    """Where the user is (the file and line, and the selected text if any) for the prompt, and the
    selected text alone (it joins the question in the index search)."""
    uri = _param(params, "uri", str, required=False)
    if uri is None:
        return None, ""
    doc = ls.project.documents.get(uri)
    if doc is None:
        raise JsonRpcInvalidParams(f"unknown document {uri}")
    parts = [f"The user is looking at {ls.project.display_path(doc)}"]
    if (position := params.get("position")) is not None:
        line, _ = _position(position, "position")
        parts[0] += f", line {line + 1}"
    selection = params.get("selection")
    if selection is not None:
        if not isinstance(selection, dict):
            raise JsonRpcInvalidParams("selection must be a range {start, end}")
        try:
            start = doc.offset_at(_position(selection.get("start"), "selection.start"))
            end = doc.offset_at(_position(selection.get("end"), "selection.end"))
        except DocumentError as exc:
            raise JsonRpcInvalidParams(str(exc)) from exc
        if end > start:
            selected = doc.text[start:end]
            parts.append(f"The user selected:\n```\n{selected}\n```")
            return ".\n".join(parts), selected
    return ".\n".join(parts), ""


class _ClientLogHandler(logging.Handler):
    """Daemon events at INFO and above go to the editor's log as window/logMessage."""

    _LEVELS = {logging.ERROR: types.MessageType.Error, logging.WARNING: types.MessageType.Warning,
               logging.INFO: types.MessageType.Info}

    def __init__(self, ls: CoderagServer) -> None:
        super().__init__(logging.INFO)
        self.ls = ls

    def emit(self, record: logging.LogRecord) -> None:
        kind = self._LEVELS.get(record.levelno, types.MessageType.Error)
        self.ls.call_soon(self.ls.window_log_message, types.LogMessageParams(type=kind, message=self.format(record)))

