"""The workspace as the daemon sees it: documents, which files may enter the context, the context
order, and the cursor of the last edit or completion (where a preload expects the next completion).

The LSP event loop changes it (cheap: text and order only) and the model worker reads it (the
expensive part, tokenizing changed files, happens in `ContextPolicy.segments` on the worker). One
lock guards it; nothing slow runs under the lock on the event-loop side.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .admission import AdmissionOptions, AdmissionPolicy
from .context import ContextOptions, ContextPolicy
from .documents import Document, DocumentStore, TextChange, path_to_uri
from .options import Options
from .prompts import PromptLayout

log = logging.getLogger("coderag_daemon.project")


@dataclass(frozen=True)
class Cursor:
    uri: str
    offset: int


class Project:
    def __init__(self, options: Options) -> None:
        self.lock = threading.RLock()
        self.documents = DocumentStore()
        self.admission = AdmissionPolicy(options=_admission_options(options))
        self.options = options
        self.context: ContextPolicy | None = None
        self.cursor: Cursor | None = None
        """Where the next completion is expected: the last edit, or the last completion asked for."""
        self._order: dict[str, None] = {}  # context paths, LRU order; survives a model change

    # --- configuration ----------------------------------------------------------------------------

    def set_roots(self, roots: Iterable[Path]) -> None:
        with self.lock:
            for root in list(self.admission.roots):
                self.admission.remove_root(root)
            for root in roots:
                self.admission.add_root(root)

    @property
    def repo_name(self) -> str:
        roots = self.admission.roots
        return roots[0].name if roots else "workspace"

    def set_layout(self, layout: PromptLayout) -> None:
        """A model was loaded: lay the same files out in the same order for its vocabulary."""
        with self.lock:
            self.context = ContextPolicy(layout, self.repo_name, _context_options(self.options, layout))
            for path in self._order:
                doc = self._document_at(path)
                if doc is not None:
                    self.context.open(self.display_path(doc), doc.text)

    def reconfigure(self, options: Options) -> None:
        """New admission rules or budgets; the caller restarts the watcher on the new policy."""
        with self.lock:
            self.admission = AdmissionPolicy(self.admission.roots, _admission_options(options))
            self.options = options
            if self.context is not None:
                self.set_layout(dataclasses.replace(self.context.layout, options=options.prompt_options()))

    # --- editor events ----------------------------------------------------------------------------

    def opened(self, uri: str, text: str, version: int, language_id: str) -> Document:
        with self.lock:
            doc = self.documents.open(uri, text, version, language_id)
            if self._admitted(doc):
                self._enter(doc)
            return doc

    def changed(self, uri: str, version: int, changes: list[TextChange]) -> Document:
        with self.lock:
            doc = self.documents.change(uri, version, changes)
            if changes and changes[-1].range is not None:
                start = changes[-1].range[0]
                self.cursor = Cursor(uri, doc.offset_at(start) + len(changes[-1].text))
            if self._admitted(doc):
                self._enter(doc, edited=True)
            return doc

    def completion_asked(self, uri: str, offset: int) -> None:
        with self.lock:
            self.cursor = Cursor(uri, offset)

    def holds(self, doc: Document) -> bool:
        """Whether `doc` is one of the context's files."""
        with self.lock:
            return doc.path is not None and self._key(doc) in self._order

    def saved(self, uri: str, text: str | None) -> None:
        with self.lock:
            doc = self.documents.save(uri, text)
            if doc.path is not None and self._key(doc) in self._order and self.context is not None:
                self.context.update_text(self.display_path(doc), doc.text)

    def closed(self, uri: str) -> None:
        """A closed file stays in the context (it was recently used, and removing it would shift
        every file after it), now read from disk."""
        with self.lock:
            doc = self.documents.close(uri)
            if doc.path is None or self._key(doc) not in self._order:
                return
            on_disk = self.documents.load_from_disk(doc.path)
            if on_disk is None:
                self._leave(doc.path)
            elif self.context is not None:
                self.context.update_text(self.display_path(on_disk), on_disk.text)

    # --- disk events (watcher thread or event loop) -----------------------------------------------

    # Each returns whether the context may have changed, so that the cache is brought up to date.

    def disk_changed(self, path: str) -> bool:
        """Re-read a context file that the editor does not hold open; the editor's buffer wins."""
        with self.lock:
            key = str(Path(path))
            if key not in self._order:
                return False
            before = self._document_at(key)
            old_text = before.text if before is not None else None
            doc = self.documents.refresh_from_disk(path)
            if doc is None:
                self._leave(Path(path))
                return True
            if doc.source != "disk" or doc.text == old_text:
                return False
            if self.context is not None:
                self.context.update_text(self.display_path(doc), doc.text)
            return True

    def disk_deleted(self, path: str) -> bool:
        with self.lock:
            left = [key for key in self._keys_under(path)
                    if (doc := self._document_at(key)) is None or doc.source == "disk"]
            for key in left:
                self._leave(Path(key))
            return bool(left)

    def disk_moved(self, src: str, dst: str) -> bool:
        with self.lock:
            old_prefix, new_prefix = str(Path(src)), str(Path(dst))
            renamed = {key: new_prefix + key[len(old_prefix):] for key in self._keys_under(src)}
            self.documents.rename(src, dst)
            self._order = {renamed.get(k, k): None for k in self._order}  # same places, new names
            for old_key, new_key in renamed.items():
                if self.context is not None:
                    self.context.rename(self.admission.display_path(Path(old_key)), self.admission.display_path(Path(new_key)))
                if not self.admission.check_location(new_key):
                    self._leave(Path(new_key))
            return bool(renamed)

    # --- reading ----------------------------------------------------------------------------------

    def segments(self, exclude: Document | None = None) -> list[list[int]]:
        """The file context for the model; changed files are tokenized here, outside the lock, so
        the event loop's edits never wait for the tokenizer."""
        with self.lock:
            context = self._require_context()
            todo = context.pending()
        prepared = [(path, context.prepare(path, text)) for path, text in todo]
        with self.lock:
            for path, file in prepared:
                context.fill(path, file)
            context = self._require_context()
            return context.segments(self.display_path(exclude) if exclude is not None and exclude.path else None)

    def layout(self) -> PromptLayout:
        """The prompt layout of the loaded model."""
        with self.lock:
            return self._require_context().layout

    def _require_context(self) -> ContextPolicy:
        if self.context is None:
            raise RuntimeError("no model is loaded yet")
        return self.context

    def describe(self, cached_tokens: int) -> list[dict[str, Any]]:
        with self.lock:
            if self.context is None:
                return []
            out = self.context.describe(cached_tokens)
            by_display = {self.admission.display_path(Path(k)): k for k in self._order}
            for item in out:
                key = by_display.get(item["path"])
                item["uri"] = path_to_uri(key) if key else None
            return out

    def context_paths(self) -> frozenset[str]:
        """Absolute paths of the files in the file context now (within its budget)."""
        with self.lock:
            if self.context is None:
                return frozenset()
            return frozenset(key for key in self._order if self.admission.display_path(Path(key)) in self.context)

    def display_path(self, doc: Document) -> str:
        """The path the model reads in file headers: relative to its workspace root."""
        return self.admission.display_path(doc.path) if doc.path is not None else doc.uri

    # --- internals --------------------------------------------------------------------------------

    def _keys_under(self, path: str) -> list[str]:
        """Context keys of `path` itself or of files below it (a directory)."""
        prefix = str(Path(path))
        return [k for k in self._order if k == prefix or k.startswith(prefix + "/")]

    @staticmethod
    def _key(doc: Document) -> str:
        return str(doc.path)

    def _document_at(self, key: str) -> Document | None:
        return self.documents.get(path_to_uri(key))

    def _admitted(self, doc: Document) -> bool:
        """The admission rules, on the editor's text; each refusal is logged once by the policy."""
        return doc.path is not None and bool(self.admission.check_location(doc.path)) and bool(
            self.admission.check_text(doc.path, doc.text))

    def _enter(self, doc: Document, edited: bool = False) -> None:
        key = self._key(doc)
        if edited:
            self._order.pop(key, None)
        self._order[key] = None
        if self.context is not None:
            (self.context.touched if edited else self.context.open)(self.display_path(doc), doc.text)

    def _leave(self, path: Path) -> None:
        key = str(path)
        self._order.pop(key, None)
        if self.context is not None:
            self.context.remove(self.admission.display_path(path))
        doc = self._document_at(key)
        if doc is not None and doc.source == "disk":
            self.documents.remove(path)


def _context_options(options: Options, layout: PromptLayout) -> ContextOptions:
    """The file context's budget: the setting, less what must stay free in n_ctx for a request
    tail and its answer, so that no request overflows the window however full the context is."""
    room = options.n_ctx - layout.options.request_tokens(options.max_completion_tokens, options.max_chat_tokens)
    budget = min(options.context_tokens, max(room, options.n_ctx // 4))
    if budget < options.context_tokens:
        log.info("file context limited to %d tokens (contextTokens %d): n_ctx %d keeps room for the request and its answer",
                 budget, options.context_tokens, options.n_ctx)
    return ContextOptions(token_budget=budget)


def _admission_options(options: Options) -> AdmissionOptions:
    return AdmissionOptions(max_file_bytes=options.max_file_kib * 1024, ignore_globs=list(options.ignore_globs))

