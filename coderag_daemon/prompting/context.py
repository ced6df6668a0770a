"""Which files make up the model's context, in which order, within a token budget.

The engine reprocesses everything after the first changed token, so the order is chosen to keep
changes at the end: a newly opened file is appended, an edited file moves to the tail (repeated
edits to the file being worked on then only touch the tail), and a file refreshed from disk keeps
its place. Past the budget, least recently used files leave first; since dropping the first file
shifts every file after it (a full reprocess), eviction goes down to a low-water mark so that it
happens once in a while, not on every keystroke near the limit.

Changes only record text, so the LSP event loop never waits for a tokenizer: files are tokenized when
the model worker asks for the segments. `pending` and `prepare` let it tokenize outside any lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .prompts import PromptLayout

log = logging.getLogger("coderag_daemon.prompting.context")

# No tokenizer makes tokens longer than this many characters on average over a budget's worth of
# text, so a file is tokenized only this far to learn that it is over budget.
_MAX_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class ContextOptions:
    token_budget: int = 9728
    """Tokens of all file segments together (the head and request tail come on top)."""
    low_water: float = 0.75
    """Past a limit, evict down to this fraction of it, so that the next eviction is far off."""
    max_files: int = 64
    """Files in the context at most; many tiny files also slow the model down."""

    def __post_init__(self) -> None:
        if self.token_budget < 1 or self.max_files < 1:
            raise ValueError(f"token_budget and max_files must be positive, got {self.token_budget} and {self.max_files}")
        if not 0 < self.low_water <= 1:
            raise ValueError(f"low_water must be in (0, 1], got {self.low_water}")


@dataclass(frozen=True)
class ContextEntry:
    """One file as the model sees it: its segment, where it starts in the whole context."""

    path: str
    tokens: tuple[int, ...]
    start: int
    truncated: bool


@dataclass(frozen=True)
class _File:
    text: str
    tokens: tuple[int, ...] | None = None
    """None until the worker tokenizes it."""
    truncated: bool = False


class ContextPolicy:
    """The files of the context in least- to most-recently-used order, with their segment tokens.

    Paths are what the model reads in the file headers: pass them relative to the workspace root.
    Each file is tokenized once per text. Used from one thread; results are snapshots.
    """

    def __init__(self, layout: PromptLayout, repo_name: str, options: ContextOptions | None = None) -> None:
        self.layout = layout
        self.options = options or ContextOptions()
        self._head = tuple(layout.head(repo_name))
        self._files: dict[str, _File] = {}  # insertion order = LRU order

    def __contains__(self, path: str) -> bool:
        return path in self._files

    def __len__(self) -> int:
        return len(self._files)

    @property
    def total_tokens(self) -> int:
        """Tokens of the tokenized file segments (what the budget limits)."""
        return sum(len(f.tokens) for f in self._files.values() if f.tokens is not None)

    # --- changes ----------------------------------------------------------------------------------

    def open(self, path: str, text: str) -> None:
        """A file enters (opened in the editor, or loaded from disk): appended at the tail, which
        leaves the cached prefix intact. A file already in the context stays where it is."""
        if path in self._files:
            self.update_text(path, text)
            return
        self._files[path] = _File(text)

    def touched(self, path: str, text: str) -> None:
        """The user edited `path`: it moves to the tail with its new text (entering if it was not
        in the context). Unchanged text (a save without edits) moves nothing."""
        old = self._files.get(path)
        if old is not None and old.text == text:
            return
        self._files.pop(path, None)
        self._files[path] = _File(text)

    def update_text(self, path: str, text: str) -> None:
        """The text changed without the user editing it (e.g. re-read from disk): same place.
        Files not in the context are ignored."""
        old = self._files.get(path)
        if old is None or old.text == text:
            return
        self._files[path] = _File(text)

    def remove(self, path: str) -> None:
        self._files.pop(path, None)

    def rename(self, old: str, new: str) -> None:
        """The file keeps its place under its new path (replacing any file already at `new`);
        it is tokenized again, since the path is in the segment's header."""
        entry = self._files.get(old)
        if entry is None or old == new:
            return
        self._files.pop(new, None)
        self._files = {(new if p == old else p): (_File(entry.text) if p == old else f) for p, f in self._files.items()}

    # --- tokenizing (on the model worker) -----------------------------------------------------------

    def pending(self) -> list[tuple[str, str]]:
        """(path, text) of the files not tokenized yet."""
        return [(p, f.text) for p, f in self._files.items() if f.tokens is None]

    def prepare(self, path: str, text: str) -> _File:
        """Tokenize one file. Reads no mutable state, so it may run outside the caller's lock."""
        return self._tokenize(path, text)

    def fill(self, path: str, prepared: _File) -> None:
        """Store a prepared file, unless its text changed meanwhile."""
        current = self._files.get(path)
        if current is not None and current.tokens is None and current.text == prepared.text:
            self._files[path] = prepared

    # --- reading ----------------------------------------------------------------------------------

    def segments(self, exclude: str | None = None) -> list[list[int]]:
        """The head, then one segment per file in order; `exclude` (the file being completed, which
        the request tail shows instead) is left out. Fresh lists: the caller may keep them."""
        return [list(self._head), *(list(e.tokens) for e in self.entries(exclude))]

    def entries(self, exclude: str | None = None) -> list[ContextEntry]:
        """The files as laid out by ``segments(exclude)``, with their start offsets. Tokenizes
        what is still pending and applies the budget first."""
        for path, text in self.pending():
            self.fill(path, self.prepare(path, text))
        self._enforce_budget()
        out: list[ContextEntry] = []
        start = len(self._head)
        for path, f in self._files.items():
            if path != exclude and f.tokens is not None:
                out.append(ContextEntry(path, f.tokens, start, f.truncated))
                start += len(f.tokens)
        return out

    def describe(self, cached_tokens: int, exclude: str | None = None) -> list[dict[str, Any]]:
        """For the ``coderag/context`` request: each file, and whether the model's cache holds it
        entirely (it lies within the first `cached_tokens` tokens)."""
        return [
            {"path": e.path, "tokens": len(e.tokens), "start": e.start,
             "cached": e.start + len(e.tokens) <= cached_tokens, "truncated": e.truncated}
            for e in self.entries(exclude)
        ]

    # --- budget -----------------------------------------------------------------------------------

    def _tokenize(self, path: str, text: str) -> _File:
        """A file's segment, cut to its first lines within the budget if it alone exceeds it."""
        budget = self.options.token_budget
        probe = text[: budget * _MAX_CHARS_PER_TOKEN]
        tokens = self.layout.file_segment(path, probe)
        if len(tokens) <= budget and len(probe) < len(text):
            tokens = self.layout.file_segment(path, text)  # unusually long tokens: look at it all
            probe = text
        if len(tokens) <= budget:
            return _File(text, tuple(tokens), False)
        log.info("%s: %d+ tokens, more than the whole %d-token budget; keeping its first lines", path, len(tokens), budget)
        return _File(text, tuple(self._head_lines(path, probe, tokens)), True)

    def _head_lines(self, path: str, text: str, tokens: list[int]) -> list[int]:
        """The segment of the longest run of whole first lines of `text` within the budget
        (`tokens` is the segment of all of `text`)."""
        budget = self.options.token_budget
        while len(tokens) > budget and text:
            cut = int(len(text) * budget / len(tokens) * 0.97)
            text = text[: text.rfind("\n", 0, cut) + 1 or cut]
            tokens = self.layout.file_segment(path, text)
        return tokens[:budget]

    def _enforce_budget(self) -> None:
        """Past the token or file limit, evict least recently used files down to the low-water
        marks; the most recent file always stays."""
        o = self.options
        total = self.total_tokens
        if total <= o.token_budget and len(self._files) <= o.max_files:
            return
        reason = f"{total} tokens in {len(self._files)} files, over the limit of {o.token_budget} tokens / {o.max_files} files"
        low_tokens, low_files = int(o.token_budget * o.low_water), max(int(o.max_files * o.low_water), 1)
        while len(self._files) > 1 and (total > low_tokens or len(self._files) > low_files):
            path = next(iter(self._files))
            evicted = self._files.pop(path)
            total -= len(evicted.tokens or ())
            log.info("evicted %s (%d tokens, least recently used): %s", path, len(evicted.tokens or ()), reason)
        log.info("context now %d tokens in %d files (low-water %d tokens / %d files)", total, len(self._files), low_tokens, low_files)
