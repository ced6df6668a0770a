"""Which files make up the model's context, in which order, within a token budget.

The engine reprocesses everything after the first changed token, so the order is chosen to keep
changes at the end: a newly opened file is appended, an edited file moves to the tail (repeated
edits to the file being worked on then only touch the tail), and a file refreshed from disk keeps
its place. Past the budget, least recently used files leave first; since dropping the first file
shifts every file after it (a full reprocess), eviction goes down to a low-water mark so that it
happens once in a while, not on every keystroke near the limit.

Changes only record text, so the LSP event loop never waits for a tokenizer: files are tokenized when
the model worker asks for the segments. `pending`, `prepare` and `fill` let it tokenize outside any lock.

After a restart, the order the cache was saved with (`prefer`) decides where the files opened again
go, whatever order the editor opens them in, so the saved cache's prefix matches them; until the
first edit, files that were not in the saved cache (the budget had evicted them) leave first.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..prompting.context import ContextLayout, Segment
from .files import keys_under

log = logging.getLogger("coderag_daemon.workspace.file_order")


@dataclass(frozen=True, eq=False)
class FileText:
    """A file's text in the context; compared by identity, so that a segment tokenized from it is
    stored only if neither the text nor the layout changed meanwhile."""

    text: str
    segment: Segment | None = None
    """None until the model worker tokenizes it."""


@dataclass(frozen=True)
class Pending:
    """A file still to tokenize, with everything its segment depends on (taken under the lock)."""

    key: str
    path: str
    """The display path, which the segment's header shows."""
    file: FileText
    layout: ContextLayout

    @property
    def text(self) -> str:
        return self.file.text


@dataclass(frozen=True)
class ContextEntry:
    """One file as the model sees it: its segment, where it starts in the whole context."""

    key: str
    path: str
    tokens: tuple[int, ...]
    start: int
    truncated: bool

    def describe(self, cached_tokens: int) -> dict[str, Any]:
        """For the ``coderag/context`` request; cached: the model's cache holds the whole segment
        (it lies within the first `cached_tokens` tokens)."""
        return {
            "path": self.path,
            "tokens": len(self.tokens),
            "start": self.start,
            "cached": self.start + len(self.tokens) <= cached_tokens,
            "truncated": self.truncated,
        }


class FileOrder:
    """The files of the context in least- to most-recently-used order, keyed by absolute path, with
    their segment tokens once a model's layout is known.

    `display` gives the path the model reads in a file's header. `on_evict` hears of each file the
    budget pushed out. Not thread-safe: the caller holds its lock around every call but `prepare`.
    """

    def __init__(self, display: Callable[[str], str] = str, on_evict: Callable[[str], None] | None = None) -> None:
        self.layout: ContextLayout | None = None
        self._display = display
        self._on_evict = on_evict
        self._files: dict[str, FileText] = {}  # insertion order = LRU order
        self._preferred: dict[str, int] = {}
        """Rank of each file in the order a saved cache was made with (see `prefer`)."""

    def __contains__(self, key: object) -> bool:
        return key in self._files

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[str]:
        """The keys in order (a snapshot: the order may change while the caller iterates)."""
        return iter(list(self._files))

    @property
    def total_tokens(self) -> int:
        """Tokens of the tokenized file segments (what the budget limits)."""
        return sum(len(f.segment.tokens) for f in self._files.values() if f.segment is not None)

    # --- changes ----------------------------------------------------------------------------------

    def prefer(self, keys: Sequence[str]) -> None:
        """The order of a saved cache: files of it take their places in it, ahead of the others, those
        in the context now and those that enter later, so that the saved cache's prefix fits them
        however the editor opens them. (Called before anything is cached for the current order.)"""
        self._preferred = {key: rank for rank, key in enumerate(keys)}
        unranked = len(self._preferred)
        order = sorted(enumerate(self._files), key=lambda item: (self._preferred.get(item[1], unranked), item[0]))
        self._files = {key: self._files[key] for _, key in order}

    def add(self, key: str, text: str) -> None:
        """A file enters (opened in the editor, or loaded from disk): appended at the tail, which
        leaves the cached prefix intact, or, for a file of the preferred order, placed before the
        first file that comes later in it or is not in it. A file already in the context stays where
        it is."""
        if key in self._files:
            self.refresh(key, text)
            return
        rank = self._preferred.get(key)
        unranked = len(self._preferred)
        later = (
            None if rank is None else next((k for k in self._files if self._preferred.get(k, unranked) > rank), None)
        )
        if later is None:
            self._files[key] = FileText(text)
            return
        files: dict[str, FileText] = {}
        for k, f in self._files.items():
            if k == later:
                files[key] = FileText(text)
            files[k] = f
        self._files = files

    def touch(self, key: str, text: str) -> None:
        """The user edited the file: it moves to the tail with its new text (entering if it was not
        in the context). Unchanged text (a save without edits) moves nothing."""
        old = self._files.get(key)
        if old is not None and old.text == text:
            return
        self._files.pop(key, None)
        self._files[key] = FileText(text)
        self._preferred = {}  # from the first edit on, recency alone orders the files

    def refresh(self, key: str, text: str) -> None:
        """The text changed without the user editing it (e.g. re-read from disk): same place.
        Files not in the context are ignored."""
        old = self._files.get(key)
        if old is not None and old.text != text:
            self._files[key] = FileText(text)

    def remove(self, key: str) -> None:
        self._files.pop(key, None)

    def move(self, src: str, dst: str) -> dict[str, str]:
        """A file or directory moved: its files keep their places under their new keys (replacing
        files already there) and are tokenized again, since the path is in the segment's header.
        Returns the moved keys, old to new."""
        renamed = {key: dst + key[len(src) :] for key in keys_under(self._files, src)}
        for new in set(renamed.values()) - renamed.keys():
            self._files.pop(new, None)
        files: dict[str, FileText] = {}
        for key, f in self._files.items():
            new = renamed.get(key, key)
            files[new] = f if new == key else FileText(f.text)
        self._files = files
        return renamed

    def relayout(self, layout: ContextLayout) -> None:
        """A model was loaded, or display paths changed: the same files in the same order, each
        tokenized again for the new layout."""
        self.layout = layout
        self._files = {k: FileText(f.text) for k, f in self._files.items()}

    # --- tokenizing (on the model worker) -----------------------------------------------------------

    def pending(self) -> list[Pending]:
        """The files not tokenized yet."""
        layout = self._require_layout()
        return [Pending(k, self._display(k), f, layout) for k, f in self._files.items() if f.segment is None]

    @staticmethod
    def prepare(item: Pending) -> Segment:
        """Tokenize one file. Reads no mutable state, so it may run outside the caller's lock."""
        return item.layout.segment(item.path, item.text)

    def fill(self, item: Pending, segment: Segment) -> None:
        """Store a prepared segment, unless the file's text or the layout changed meanwhile."""
        if self._files.get(item.key) is item.file:  # a new layout replaces every FileText
            self._files[item.key] = FileText(item.text, segment)

    # --- reading ----------------------------------------------------------------------------------

    def digests(self) -> list[tuple[str, str, int]]:
        """(key, sha256 of the text, tokens; 0 if not tokenized yet) of each file, in order: what a
        saved cache holds, and how a later context is matched against it."""
        return [
            (
                k,
                hashlib.sha256(f.text.encode("utf-8", "surrogatepass")).hexdigest(),
                len(f.segment.tokens) if f.segment is not None else 0,
            )
            for k, f in self._files.items()
        ]

    def segments(self, exclude: str | None = None) -> list[list[int]]:
        """The head, then one segment per file in order; `exclude` (the file being completed, which
        the request tail shows instead) is left out. Fresh lists: the caller may keep them."""
        head = self._require_layout().head
        return [list(head), *(list(e.tokens) for e in self.entries(exclude))]

    def entries(self, exclude: str | None = None) -> list[ContextEntry]:
        """The files as laid out by ``segments(exclude)``, with their start offsets. Tokenizes
        what is still pending and applies the budget first."""
        layout = self._require_layout()
        for item in self.pending():
            self.fill(item, self.prepare(item))
        self._evict(layout)
        out: list[ContextEntry] = []
        start = len(layout.head)
        for key, f in self._files.items():
            if key != exclude and f.segment is not None:
                out.append(ContextEntry(key, self._display(key), f.segment.tokens, start, f.segment.truncated))
                start += len(f.segment.tokens)
        return out

    def _require_layout(self) -> ContextLayout:
        if self.layout is None:
            raise RuntimeError("no model is loaded yet")
        return self.layout

    def _evict(self, layout: ContextLayout) -> None:
        """Past the token or file limit, evict least recently used files down to the low-water
        marks; the most recent file always stays. Before the first edit after a restart, the files
        outside the saved order go first, all of them: the budget had evicted them when the cache
        was saved, and kept anywhere they would cut the saved prefix short."""
        o = layout.options
        total = self.total_tokens
        if total <= o.token_budget and len(self._files) <= o.max_files:
            return
        reason = (
            f"{total} tokens in {len(self._files)} files, "
            f"over the limit of {o.token_budget} tokens / {o.max_files} files"
        )
        low_tokens, low_files = int(o.token_budget * o.low_water), max(int(o.max_files * o.low_water), 1)
        while len(self._files) > 1:
            outside = [k for k in self._files if k not in self._preferred] if self._preferred else []
            if len(outside) == len(self._files):  # none of the saved files is open
                outside = []
            if not outside and total <= low_tokens and len(self._files) <= low_files:
                break
            key = outside[0] if outside else next(iter(self._files))
            evicted = self._files.pop(key).segment
            tokens = len(evicted.tokens) if evicted is not None else 0
            total -= tokens
            why = "not in the saved cache" if outside else "least recently used"
            log.info("evicted %s (%d tokens, %s): %s", self._display(key), tokens, why, reason)
            if self._on_evict is not None:
                self._on_evict(key)
        log.info(
            "context now %d tokens in %d files (low-water %d tokens / %d files)",
            total,
            len(self._files),
            low_tokens,
            low_files,
        )
