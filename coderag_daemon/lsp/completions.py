"""Inline completions as the daemon serves them: what it showed (typing through a suggestion asks
the model nothing), which window of the document each request sees, and one request per document
at a time (a newer one supersedes the one still running). On the event loop only."""

from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING

from ..index.retrieval import CountTokens
from ..prompting import definitions
from ..prompting.completion import TypeThroughCache, Window, WindowStarts
from ..prompting.definitions import names_used
from ..worker import jobs
from . import params

if TYPE_CHECKING:
    from ..workspace.documents import Document
    from .server import CoderagServer

log = logging.getLogger(__name__)


class InlineCompletions:
    def __init__(self, ls: CoderagServer) -> None:
        self.ls = ls
        self.shown = TypeThroughCache()
        self.windows = WindowStarts()
        self._running: dict[str, threading.Event] = {}
        """The cancel event of each document's completion under way."""

    async def complete(self, uri: str, line: int, character: int) -> str:
        """The text to insert at the position, "" for none."""
        ls = self.ls
        doc = params.document(ls.project, uri, ": send textDocument/didOpen first")
        offset = params.offset(doc, line, character)
        before, after = doc.text[:offset], doc.text[offset:]
        cached = self.shown.lookup(uri, before, after)
        if cached is not None:
            return cached
        window = self.windows.window(uri, doc.text, offset)
        ls.project.completion_asked(uri, offset)
        if ls.worker.preload_pending():
            ls.schedule_preload()  # waiting or under way: aimed at this completion now, not at the old guess
        outcome: jobs.Outcome = await ls.run(
            functools.partial(
                jobs.complete,
                project=ls.project,
                doc=doc,
                window=window,
                options=ls.options,
                definitions=self.definitions(doc, window),
            ),
            label="completion",
            cancel=self._supersede(uri),
        )
        self._running.pop(uri, None)
        if outcome.left_out:
            ls.schedule_preload()  # the files it left out, for the next completion
        self.shown.remember(uri, before, after, outcome.text)
        ls.worker.report_request({"kind": "completion", **outcome.as_stats()})
        log.info("completion: %s", outcome.as_stats())
        return outcome.text

    def definitions(self, doc: Document, window: Window) -> jobs.Definitions:
        """Signatures of the names used above the cursor, from the workspace index, leaving out the
        files of the file context and the definitions the window shows (the model sees those)."""
        names = names_used(window)
        index, shown = self.ls.index, self.ls.project.context_paths() - {str(doc.path)}
        lines = range(window.first_line, window.first_line + window.prefix.count("\n") + window.suffix.count("\n") + 1)

        def in_window(d: definitions.Definition) -> bool:
            return d.path == doc.path and d.line in lines

        def found(count_tokens: CountTokens, budget: int) -> str:  # on the worker thread, as chat's retrieval
            return definitions.definitions(
                names, lambda name: index.search(name, k=8, exclude_paths=shown), count_tokens, budget, in_window
            )

        return found

    def _supersede(self, uri: str) -> threading.Event:
        """Cancel the document's completion under way; the event that cancels the new one."""
        previous = self._running.pop(uri, None)
        if previous is not None:
            previous.set()
        cancel = self._running[uri] = threading.Event()
        return cancel

    def window_at(self, uri: str, doc: Document, offset: int) -> Window:
        """The window a completion at `offset` would see (a preload aims at it)."""
        return self.windows.window(uri, doc.text, min(offset, len(doc.text)))

    def closed(self, uri: str) -> None:
        self.windows.forget(uri)

    def forget_shown(self) -> None:
        """Files changed on disk: a suggestion shown before may no longer fit."""
        self.shown.clear()
