"""The LSP handlers: each parses its message, makes one call on the server's state and returns
the answer in protocol types. What the calls do lives in server.py, completions.py and chat.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lsprotocol import types

from ..options import Options
from ..workspace.documents import DocumentError, TextChange, uri_to_path
from . import chat, methods, params
from .server import CoderagServer

log = logging.getLogger(__name__)


def build_server(options: Options) -> CoderagServer:
    server = CoderagServer(options)
    for method, handler, *registration in _HANDLERS:
        server.feature(method, *registration)(handler)
    return server


def _paths(uris: list[str]) -> list[Path]:
    return [p for uri in uris if (p := uri_to_path(uri)) is not None]


# --- lifecycle and workspace -----------------------------------------------------------------------


def initialize(ls: CoderagServer, p: types.InitializeParams) -> None:
    uris = [f.uri for f in p.workspace_folders or []] or ([p.root_uri] if p.root_uri else [])
    ls.initialize(_paths(uris), p.initialization_options)


async def initialized(ls: CoderagServer, p: types.InitializedParams) -> None:
    await ls.initialized()


def shutdown(ls: CoderagServer, p: None) -> None:
    ls.stop()


def did_change_configuration(ls: CoderagServer, p: types.DidChangeConfigurationParams) -> None:
    settings = p.settings
    if isinstance(settings, dict) and isinstance(settings.get("coderag"), dict):
        settings = settings["coderag"]
    ls.configure(settings, initial=False)


def did_change_folders(ls: CoderagServer, p: types.DidChangeWorkspaceFoldersParams) -> None:
    ls.change_roots(_paths([f.uri for f in p.event.added]), _paths([f.uri for f in p.event.removed]))


# --- documents ------------------------------------------------------------------------------------


def did_open(ls: CoderagServer, p: types.DidOpenTextDocumentParams) -> None:
    d = p.text_document
    doc = ls.project.opened(d.uri, d.text, d.version, d.language_id)
    ls.index_document(doc)
    if ls.project.holds(doc):
        ls.schedule_preload()


def did_change(ls: CoderagServer, p: types.DidChangeTextDocumentParams) -> None:
    d = p.text_document
    try:
        doc = ls.project.changed(d.uri, d.version, [TextChange.from_lsp(c) for c in p.content_changes])
    except DocumentError as exc:
        log.warning("edit of %s refused: %s", d.uri, exc)
        return
    ls.index_document(doc)
    ls.schedule_preload()


def did_save(ls: CoderagServer, p: types.DidSaveTextDocumentParams) -> None:
    try:
        ls.project.saved(p.text_document.uri, p.text)
    except DocumentError as exc:
        log.warning("save of %s ignored: %s", p.text_document.uri, exc)


def did_close(ls: CoderagServer, p: types.DidCloseTextDocumentParams) -> None:
    uri = p.text_document.uri
    try:
        changed = ls.project.closed(uri)
    except DocumentError as exc:
        log.warning("close of %s ignored: %s", uri, exc)
        return
    if changed:  # the buffer's changes were not saved, or the file changed on disk meanwhile
        ls.schedule_preload()
    ls.completions.closed(uri)
    if (path := uri_to_path(uri)) is not None:
        ls.index.update_path(path)  # the file on disk is what counts again


# --- requests -------------------------------------------------------------------------------------


async def inline_completion(ls: CoderagServer, p: types.InlineCompletionParams) -> types.InlineCompletionList:
    text = await ls.completions.complete(p.text_document.uri, p.position.line, p.position.character)
    here = types.Range(start=p.position, end=p.position)
    return types.InlineCompletionList(items=[types.InlineCompletionItem(insert_text=text, range=here)] if text else [])


async def chat_request(ls: CoderagServer, p: Any) -> dict[str, Any]:
    return await chat.answer(ls, p)


async def search(ls: CoderagServer, p: Any) -> dict[str, Any]:
    query = params.text(p, "query")
    limit = params.param(p, "limit", int, required=False)
    return await ls.search(query, 20 if limit is None else limit)


async def context(ls: CoderagServer, p: Any) -> dict[str, Any]:
    return await ls.describe_context()


async def clear_cache(ls: CoderagServer, p: Any) -> dict[str, Any]:
    await ls.clear_cache()
    return {}


def document_text(ls: CoderagServer, p: Any) -> dict[str, Any]:
    doc = params.document(ls.project, params.param(p, "uri", str))
    return {"text": doc.text, "version": doc.version}


_HANDLERS: list[tuple[Any, ...]] = [
    (types.INITIALIZE, initialize),
    (types.INITIALIZED, initialized),
    (types.SHUTDOWN, shutdown),
    (types.WORKSPACE_DID_CHANGE_CONFIGURATION, did_change_configuration),
    (types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS, did_change_folders),
    (types.TEXT_DOCUMENT_DID_OPEN, did_open),
    (types.TEXT_DOCUMENT_DID_CHANGE, did_change),
    (types.TEXT_DOCUMENT_DID_SAVE, did_save, types.TextDocumentSaveRegistrationOptions(include_text=True)),
    (types.TEXT_DOCUMENT_DID_CLOSE, did_close),
    (types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_completion, types.InlineCompletionOptions()),
    (methods.CHAT, chat_request),
    (methods.SEARCH, search),
    (methods.CONTEXT, context),
    (methods.CLEAR_CACHE, clear_cache),
    (methods.DOCUMENT_TEXT, document_text),
]
