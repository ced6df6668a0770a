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

from .admission import AdmissionOptions, AdmissionPolicy, is_gitignore
from ..prompting.context import ContextOptions, ContextPolicy
from .documents import Document, DocumentStore, TextChange, path_to_uri
from ..options import Options
from ..prompting.prompts import PromptLayout

log = logging.getLogger("coderag_daemon.workspace.project")


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
        """New workspace folders; the files of a removed one leave the context. The others are laid
        out again: their display paths and the repository's name depend on the roots."""
        with self.lock:
            for root in list(self.admission.roots):
                self.admission.remove_root(root)
            for root in roots:
                self.admission.add_root(root)
            self._recheck()
            if self.context is not None:
                self.set_layout(self.context.layout)

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
        """New admission rules or budgets; the files the new rules refuse leave the context. The
        caller restarts the watcher on the new policy."""
        with self.lock:
            self.admission = AdmissionPolicy(self.admission.roots, _admission_options(options))
            self.options = options
            self._recheck()
            if self.context is not None:
                self.set_layout(dataclasses.replace(self.context.layout, options=options.prompt_options()))

    # --- editor events ----------------------------------------------------------------------------

    def opened(self, uri: str, text: str, version: int, language_id: str) -> Document:
        with self.lock:
            doc = self.documents.open(uri, text, version, language_id)
            self._sync(doc)
            return doc

    def changed(self, uri: str, version: int, changes: list[TextChange]) -> Document:
        with self.lock:
            doc = self.documents.change(uri, version, changes)
            if changes and changes[-1].range is not None:
                start = changes[-1].range[0]
                self.cursor = Cursor(uri, doc.offset_at(start) + len(changes[-1].text))
            self._sync(doc, edited=True)
            return doc

    def completion_asked(self, uri: str, offset: int) -> None:
        with self.lock:
            self.cursor = Cursor(uri, offset)

    def holds(self, doc: Document) -> bool:
        """Whether `doc` is one of the context's files."""
        with self.lock:
            return doc.path is not None and self._key(doc) in self._order

    def saved(self, uri: str, text: str | None) -> None:
        """The saved text is held to the same rules as an edit's, but keeps the file's place."""
        with self.lock:
            self._sync(self.documents.save(uri, text))

    def closed(self, uri: str) -> None:
        """A closed file stays in the context (it was recently used, and removing it would shift
        every file after it), now read from disk, if the rules still admit the file there."""
        with self.lock:
            doc = self.documents.close(uri)
            if doc.path is not None and self._key(doc) in self._order:
                self._reload(doc.path, None)

    # --- disk events (watcher thread or event loop) -----------------------------------------------

    # Each returns whether the context may have changed, so that the cache is brought up to date.

    def disk_changed(self, path: str) -> bool:
        """Re-read a context file that the editor does not hold open; the editor's buffer wins."""
        with self.lock:
            rules_changed = self._rules_changed(path)
            key = str(Path(path))
            before = self._document_at(key)
            if key not in self._order or (before is not None and before.source == "editor"):
                return rules_changed
            return self._reload(Path(key), before.text if before is not None else None) or rules_changed

    def disk_deleted(self, path: str) -> bool:
        """Files deleted, no longer admitted on disk, or now behind a symlink to a refused place:
        disk copies leave; an open buffer stays unless its path is refused now."""
        with self.lock:
            keys = self._keys_under(path)
            gone = [key for key in keys if (doc := self._document_at(key)) is None or doc.source == "disk"]
            for key in gone:
                self._leave(Path(key))
            refused = self._recheck(keys)
            return self._rules_changed(path) or bool(gone) or refused

    def disk_moved(self, src: str, dst: str) -> bool:
        with self.lock:
            rules_changed = self._rules_changed(src, dst)
            old_prefix, new_prefix = str(Path(src)), str(Path(dst))
            renamed = {key: new_prefix + key[len(old_prefix):] for key in self._keys_under(src)}
            self.documents.rename(src, dst)
            self._order = {renamed.get(k, k): None for k in self._order}  # same places, new names
            for old_key, new_key in renamed.items():
                if self.context is not None:
                    self.context.rename(self.admission.display_path(Path(old_key)), self.admission.display_path(Path(new_key)))
                if not self.admission.check_location(new_key):
                    self._leave(Path(new_key))
            return bool(renamed) or rules_changed

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

    def _admitted(self, doc: Document | None) -> bool:
        """The admission rules, on the document's path and the text the context would hold; each
        refusal is logged once by the policy."""
        return doc is not None and doc.path is not None and bool(self.admission.check_location(doc.path)) and bool(
            self.admission.check_text(doc.path, doc.text))

    def _recheck(self, keys: Iterable[str] | None = None) -> bool:
        """The one place where context files (all, or those of `keys`) that the current rules refuse
        leave the context; the others keep their order. Returns whether any left."""
        refused = [key for key in (list(self._order) if keys is None else keys)
                   if key in self._order and not self._admitted(self._document_at(key))]
        for key in refused:
            self._leave(Path(key))
        return bool(refused)

    def _rules_changed(self, *paths: str) -> bool:
        """After a ``.gitignore`` among `paths` changed, moved or went: its old rules are forgotten
        and every context file is checked against the new ones. Returns whether any left."""
        rules = [path for path in paths if is_gitignore(path)]
        for path in rules:
            self.admission.invalidate(path)
        return bool(rules) and self._recheck()

    def _sync(self, doc: Document, edited: bool = False) -> None:
        """An editor buffer's text changed: it enters the context, or takes its new text there, if
        admitted; otherwise it leaves, so the context never holds text the editor no longer has."""
        if self._admitted(doc):
            self._enter(doc, edited)
        elif doc.path is not None and self._key(doc) in self._order:
            self._leave(doc.path)

    def _read_disk(self, path: Path) -> Document | None:
        """A file read from disk through the admission rules: its path (symlinks resolved) and its
        size before it is read, its text after; None if they refuse it (the caller makes it leave)."""
        if not (self.admission.check_location(path) and self.admission.check_content(path)):
            return None
        doc = self.documents.load_from_disk(path, max_bytes=self.admission.options.max_file_bytes)
        return doc if doc is not None and self.admission.check_text(path, doc.text) else None

    def _reload(self, path: Path, old_text: str | None) -> bool:
        """A context file takes its text on disk, in its place, or leaves if the rules refuse the
        file there. Returns whether the context changed."""
        doc = self._read_disk(path)
        if doc is None:
            self._leave(path)
            return True
        if doc.text == old_text:
            return False
        if self.context is not None:
            self.context.update_text(self.display_path(doc), doc.text)
        return True

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

