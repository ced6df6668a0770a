"""The workspace as the daemon sees it: documents, which files may enter the context, the context
order, and the cursor of the last edit or completion (where a preload expects the next completion).

The LSP event loop changes it (cheap: text and order only) and the model worker reads it (the
expensive part, tokenizing changed files, happens in `segments` on the worker, outside the lock).
One lock guards it; nothing slow runs under the lock on the event-loop side.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..options import Options
from ..prompting.context import ContextLayout, ContextOptions
from ..prompting.prompts import PromptLayout
from .admission import AdmissionOptions, AdmissionPolicy, is_gitignore
from .documents import Document, DocumentStore, TextChange, path_to_uri
from .file_order import FileOrder
from .files import keys_under

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
        self.files = FileOrder(display=lambda key: self.admission.display_path(key), on_evict=self._forget_copy)
        """The context's files by absolute path; the order survives a model change."""
        self.cursor: Cursor | None = None
        """Where the next completion is expected: the last edit, or the last completion asked for."""

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
            if self.files.layout is not None:
                self.set_layout(self.files.layout.layout)

    @property
    def repo_name(self) -> str:
        roots = self.admission.roots
        return roots[0].name if roots else "workspace"

    @property
    def context(self) -> FileOrder | None:
        """The file order once a model has laid it out; None before."""
        return self.files if self.files.layout is not None else None

    def set_layout(self, layout: PromptLayout) -> None:
        """A model was loaded: lay the same files out in the same order for its vocabulary."""
        with self.lock:
            self.files.relayout(ContextLayout.of(layout, self.repo_name, _context_options(self.options, layout)))

    def reconfigure(self, options: Options) -> None:
        """New admission rules or budgets; the files the new rules refuse leave the context. The
        caller restarts the watcher on the new policy."""
        with self.lock:
            self.admission = AdmissionPolicy(self.admission.roots, _admission_options(options))
            self.options = options
            self._recheck()
            if self.files.layout is not None:
                self.set_layout(dataclasses.replace(self.files.layout.layout, options=options.prompt_options()))

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
            return doc.path is not None and self._key(doc) in self.files

    def saved(self, uri: str, text: str | None) -> None:
        """The saved text is held to the same rules as an edit's, but keeps the file's place."""
        with self.lock:
            self._sync(self.documents.save(uri, text))

    def closed(self, uri: str) -> bool:
        """A closed file stays in the context (it was recently used, and removing it would shift
        every file after it), now read from disk, if the rules still admit the file there. Returns
        whether the context changed (the file on disk is not what the buffer held)."""
        with self.lock:
            doc = self.documents.close(uri)
            if doc.path is not None and self._key(doc) in self.files:
                return self._reload(doc.path, doc.text)
            return False

    # --- disk events (watcher thread or event loop) -----------------------------------------------

    # Each returns whether the context may have changed, so that the cache is brought up to date.

    def disk_changed(self, path: str) -> bool:
        """Re-read a context file that the editor does not hold open; the editor's buffer wins."""
        with self.lock:
            rules_changed = self._rules_changed(path)
            key = str(Path(path))
            before = self._document_at(key)
            if key not in self.files or (before is not None and before.source == "editor"):
                return rules_changed
            return self._reload(Path(key), before.text if before is not None else None) or rules_changed

    def disk_deleted(self, path: str) -> bool:
        """Files deleted, no longer admitted on disk, or now behind a symlink to a refused place:
        disk copies leave; an open buffer stays unless its path is refused now."""
        with self.lock:
            keys = keys_under(self.files, str(Path(path)))
            gone = [key for key in keys if (doc := self._document_at(key)) is None or doc.source == "disk"]
            for key in gone:
                self._leave(Path(key))
            refused = self._recheck(keys)
            return self._rules_changed(path) or bool(gone) or refused

    def disk_moved(self, src: str, dst: str) -> bool:
        with self.lock:
            rules_changed = self._rules_changed(src, dst)
            renamed = self.files.move(str(Path(src)), str(Path(dst)))  # same places, new names
            self.documents.rename(src, dst)
            for new_key in renamed.values():
                if not self.admission.check_location(new_key):
                    self._leave(Path(new_key))
            return bool(renamed) or rules_changed

    # --- reading ----------------------------------------------------------------------------------

    def segments(self, exclude: Document | None = None) -> list[list[int]]:
        """The file context for the model; changed files are tokenized here, outside the lock, so
        the event loop's edits never wait for the tokenizer."""
        self._tokenize_pending()
        with self.lock:
            return self.files.segments(self._key(exclude) if exclude is not None and exclude.path else None)

    def _tokenize_pending(self) -> None:
        """Tokenize the files not tokenized yet outside the lock; what changed meanwhile is tokenized
        under it by the caller's `FileOrder.segments`."""
        with self.lock:
            todo = self.files.pending()
        prepared = [(item, FileOrder.prepare(item)) for item in todo]
        with self.lock:
            for item, segment in prepared:
                self.files.fill(item, segment)

    def files_held(self, cached_prefix: Callable[[list[list[int]]], int]) -> list[tuple[str, str, int]]:
        """The leading files (path, sha256 of the text, tokens) whose segments lie within the tokens
        a cache holds of the file context; `cached_prefix` counts those tokens for the segments."""
        self._tokenize_pending()
        with self.lock:
            segments, digests = self.files.segments(), self.files.digests()
        end, held = len(segments[0]), []
        cached = cached_prefix(segments)
        for digest, segment in zip(digests, segments[1:], strict=True):
            end += len(segment)
            if end > cached:
                break
            held.append(digest)
        return held

    def layout(self) -> PromptLayout:
        """The prompt layout of the loaded model."""
        with self.lock:
            if self.files.layout is None:
                raise RuntimeError("no model is loaded yet")
            return self.files.layout.layout

    def describe(self, cached_tokens: int) -> list[dict[str, Any]]:
        """For the ``coderag/context`` request: each file as laid out, and whether the model's cache
        holds it entirely."""
        with self.lock:
            if self.files.layout is None:
                return []
            return [{**e.describe(cached_tokens), "uri": path_to_uri(e.key)} for e in self.files.entries()]

    def file_digests(self) -> list[tuple[str, str, int]]:
        """(path, sha256 of the text, tokens) of the context's files in order, for saved caches."""
        with self.lock:
            return self.files.digests()

    def prefer_order(self, keys: list[str]) -> None:
        """The file order a saved cache was made with (see FileOrder.prefer)."""
        with self.lock:
            self.files.prefer(keys)

    def context_paths(self) -> frozenset[str]:
        """Absolute paths of the files in the file context now (within its budget)."""
        with self.lock:
            return frozenset(self.files) if self.files.layout is not None else frozenset()

    def display_path(self, doc: Document) -> str:
        """The path the model reads in file headers: relative to its workspace root."""
        return self.admission.display_path(doc.path) if doc.path is not None else doc.uri

    # --- internals --------------------------------------------------------------------------------

    @staticmethod
    def _key(doc: Document) -> str:
        return str(doc.path)

    def _document_at(self, key: str) -> Document | None:
        return self.documents.get(path_to_uri(key))

    def _admitted(self, doc: Document | None) -> bool:
        """The admission rules, on the document's path and the text the context would hold; each
        refusal is logged once by the policy."""
        return (
            doc is not None
            and doc.path is not None
            and bool(self.admission.check_location(doc.path))
            and bool(self.admission.check_text(doc.path, doc.text))
        )

    def _recheck(self, keys: Iterable[str] | None = None) -> bool:
        """The one place where context files (all, or those of `keys`) that the current rules refuse
        leave the context; the others keep their order. Returns whether any left."""
        refused = [
            key
            for key in (list(self.files) if keys is None else keys)
            if key in self.files and not self._admitted(self._document_at(key))
        ]
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
        elif doc.path is not None and self._key(doc) in self.files:
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
        self.files.refresh(str(path), doc.text)
        return True

    def _enter(self, doc: Document, edited: bool = False) -> None:
        (self.files.touch if edited else self.files.add)(self._key(doc), doc.text)

    def _leave(self, path: Path) -> None:
        self.files.remove(str(path))
        self._forget_copy(str(path))

    def _forget_copy(self, key: str) -> None:
        """A file left the context (also when the budget evicted it): a copy read from disk goes
        with it; an editor buffer stays until it is closed."""
        doc = self._document_at(key)
        if doc is not None and doc.source == "disk":
            self.documents.remove(key)


def _context_options(options: Options, layout: PromptLayout) -> ContextOptions:
    """The file context's budget: the setting, less what must stay free in n_ctx for a request
    tail and its answer, so that no request overflows the window however full the context is."""
    room = options.n_ctx - layout.options.request_tokens(options.max_completion_tokens, options.max_chat_tokens)
    budget = min(options.context_tokens, max(room, options.n_ctx // 4))
    if budget < options.context_tokens:
        log.info(
            "file context limited to %d tokens (contextTokens %d): n_ctx %d keeps room for the request and its answer",
            budget,
            options.context_tokens,
            options.n_ctx,
        )
    return ContextOptions(token_budget=budget)


def _admission_options(options: Options) -> AdmissionOptions:
    return AdmissionOptions(max_file_bytes=options.max_file_kib * 1024, ignore_globs=list(options.ignore_globs))
