"""The documents of the context: editor buffers and files read from disk.

Editor buffers are edited with LSP incremental changes, whose positions count
UTF-16 code units on lines split by ``\\n``, ``\\r\\n`` and ``\\r``; Python
strings count code points, so every position is converted here and nowhere
else.  Documents are immutable snapshots: a change replaces the stored
``Document``, so a reader (the model thread) never sees half an edit.
"""

from __future__ import annotations

import logging
import os
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .files import keys_under, read_capped, utf16_len

logger = logging.getLogger(__name__)

Position = tuple[int, int]
"""(line, character): zero-based, character in UTF-16 code units, as in LSP."""
Range = tuple[Position, Position]
Source = Literal["editor", "disk"]

_BREAK = re.compile(r"\r\n|\r|\n")


class DocumentError(ValueError):
    """An edit or lookup the store refuses; the document is left unchanged."""


@dataclass(frozen=True)
class TextChange:
    """One LSP content change: replace ``range`` by ``text``, or the whole text if no range."""

    text: str
    range: Range | None = None

    @classmethod
    def from_lsp(cls, change: Any) -> TextChange:
        """Convert an lsprotocol content change (partial or whole-document) without importing it."""
        rng = getattr(change, "range", None)
        if rng is None:
            return cls(change.text)
        return cls(change.text, ((rng.start.line, rng.start.character), (rng.end.line, rng.end.character)))


class _LineIndex:
    """Line start offsets of one text, built lazily and patched locally by edits.

    Rebuilding the index costs a scan of the whole text; an edit only rescans the
    lines it touches and shifts the starts after it.
    """

    __slots__ = ("text", "_starts")

    def __init__(self, text: str, starts: list[int] | None = None) -> None:
        self.text = text
        self._starts = starts

    @property
    def starts(self) -> list[int]:
        if self._starts is None:
            self._starts = [0, *(m.end() for m in _BREAK.finditer(self.text))]
        return self._starts

    def _span(self, line: int) -> tuple[int, int]:
        """Code-point bounds of a line's content, without its line break."""
        starts = self.starts
        begin = starts[line]
        if line + 1 == len(starts):
            return begin, len(self.text)
        end = starts[line + 1]
        return begin, end - (2 if self.text[end - 2 : end] == "\r\n" else 1)

    def offset(self, position: Position) -> int:
        """Code-point offset of an LSP position; past the line end or the last line clamps."""
        line, character = position
        if line < 0 or character < 0:
            raise DocumentError(f"negative position {position}")
        if line >= len(self.starts):
            return len(self.text)
        begin, end = self._span(line)
        return begin + _utf16_to_index(self.text[begin:end], character, position)

    def position(self, offset: int) -> Position:
        """LSP position of a code-point offset; past the end clamps to the end."""
        if offset < 0:
            raise DocumentError(f"negative offset {offset}")
        offset = min(offset, len(self.text))
        line = bisect_right(self.starts, offset) - 1
        begin, end = self._span(line)
        return line, utf16_len(self.text[begin : min(offset, end)])

    def edited(self, start: int, end: int, new: str) -> _LineIndex:
        """Index of the text with ``text[start:end]`` replaced by ``new``.

        Line breaks ending before ``start`` and at or after ``end + 2`` are unchanged
        (a ``\\r\\n`` pair can merge or split only right at the edit's borders), so
        only the lines between are rescanned.
        """
        text = self.text[:start] + new + self.text[end:]
        if self._starts is None:
            return _LineIndex(text)
        starts = self._starts
        delta = len(new) - (end - start)
        keep = max(bisect_left(starts, start) - 1, 0)
        stop = end + 2 + delta
        middle = []
        for match in _BREAK.finditer(text, starts[keep]):
            if match.end() >= stop:
                break
            middle.append(match.end())
        tail = starts[bisect_left(starts, end + 2) :]
        if delta:
            tail = [s + delta for s in tail]
        return _LineIndex(text, starts[: keep + 1] + middle + tail)


def _utf16_to_index(line: str, character: int, position: Position) -> int:
    """Code-point index in ``line`` of a UTF-16 column, clamped to the line length."""
    if line.isascii():
        return min(character, len(line))
    units = 0
    for index, char in enumerate(line):
        if units == character:
            return index
        units += 2 if char > "\uffff" else 1
        if units > character:
            raise DocumentError(f"position {position} falls inside a surrogate pair")
    return len(line)


def uri_to_path(uri: str) -> Path | None:
    """Filesystem path of a ``file:`` URI (percent-decoded), None for other schemes."""
    parts = urlsplit(uri)
    if parts.scheme != "file":
        return None
    path = parts.path if parts.netloc in ("", "localhost") else f"//{parts.netloc}{parts.path}"
    return Path(os.path.abspath(url2pathname(path)))


def path_to_uri(path: str | os.PathLike[str]) -> str:
    """``file:`` URI of a path, percent-encoded."""
    return Path(os.path.abspath(path)).as_uri()


@dataclass(frozen=True)
class Document:
    """An immutable snapshot of one document. ``version`` is the editor's version (None for disk documents)."""

    uri: str
    path: Path | None
    text: str
    version: int | None
    source: Source
    language_id: str
    _index: _LineIndex | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._index is None or self._index.text is not self.text:
            object.__setattr__(self, "_index", _LineIndex(self.text))

    def offset_at(self, position: Position) -> int:
        """Code-point offset of an LSP (line, UTF-16 character) position; past a line's end or the
        last line clamps."""
        return self._lines.offset(position)

    def position_at(self, offset: int) -> Position:
        """LSP (line, UTF-16 character) position of a code-point offset; past the end clamps."""
        return self._lines.position(offset)

    @property
    def _lines(self) -> _LineIndex:
        assert self._index is not None  # set by __post_init__
        return self._index


def _apply(index: _LineIndex, change: TextChange) -> _LineIndex:
    if change.range is None:
        return _LineIndex(change.text)
    start, end = change.range
    if tuple(start) > tuple(end):
        raise DocumentError(f"range start {start} is after its end {end}")
    return index.edited(index.offset(start), index.offset(end), change.text)


def _read_text(path: str, max_bytes: int | None) -> str | None:
    """A file's text as strict UTF-8 (a BOM is dropped), None if it is not a readable UTF-8 file
    or has more than ``max_bytes`` bytes (it may have grown since its size was checked)."""
    data = read_capped(path, max_bytes)
    if data is None:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        logger.info("skipping %s: not valid UTF-8", path)
        return None


class DocumentStore:
    """All documents of the context, keyed by filesystem path (or URI for non-file documents).

    Keying by path makes an editor buffer replace the disk copy of the same file
    in place, whatever percent-encoding the editor used in its URI. An open
    editor buffer is authoritative until closed: disk operations leave it alone.
    Not thread-safe: call it from one thread (the LSP event loop).
    """

    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def __iter__(self) -> Iterator[Document]:
        return iter(list(self._docs.values()))

    def __len__(self) -> int:
        return len(self._docs)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(_uri_key(uri))

    def open(self, uri: str, text: str, version: int, language_id: str = "") -> Document:
        """Start tracking an editor buffer (textDocument/didOpen)."""
        key = _uri_key(uri)
        doc = Document(uri, uri_to_path(uri), text, version, "editor", language_id)
        self._docs[key] = doc
        return doc

    def change(self, uri: str, version: int, changes: Iterable[TextChange]) -> Document:
        """Apply LSP content changes in order, atomically: on error nothing is applied."""
        key, doc = self._editor_doc(uri)
        assert doc.version is not None  # editor documents always have one
        if version < doc.version:
            raise DocumentError(f"{uri}: version {version} is older than {doc.version}")
        index = doc._lines
        for change in changes:
            index = _apply(index, change)
        new = replace(doc, text=index.text, version=version, _index=index)
        self._docs[key] = new
        return new

    def save(self, uri: str, text: str | None = None) -> Document:
        """Record a didSave; ``text`` (when the client includes it) replaces the buffer."""
        key, doc = self._editor_doc(uri)
        if text is None or text == doc.text:
            return doc
        new = replace(doc, text=text)
        self._docs[key] = new
        return new

    def close(self, uri: str) -> Document:
        """Drop an editor buffer (didClose) and return it.

        The file is not re-read here: a caller that keeps it in the context calls
        :meth:`load_from_disk` after checking admission.
        """
        key, doc = self._editor_doc(uri)
        del self._docs[key]
        return doc

    def load_from_disk(
        self, path: str | os.PathLike[str], language_id: str = "", *, max_bytes: int | None = None
    ) -> Document | None:
        """Add or re-read a disk-backed document; returns the open buffer untouched if there is one.

        Returns None (and forgets any stale copy) if the file is missing, not a
        regular file, not UTF-8 or larger than ``max_bytes`` (never read past it).
        Admission (location, secrets, binary content) is the caller's check, before
        and after: see ``Project``.
        """
        key = os.path.abspath(path)
        old = self._docs.get(key)
        if old is not None and old.source == "editor":
            return old
        text = _read_text(key, max_bytes)
        if text is None:
            self._docs.pop(key, None)
            return None
        if old is not None and old.text == text:
            return old
        language_id = language_id or (old.language_id if old else "")
        doc = Document(path_to_uri(key), Path(key), text, None, "disk", language_id)
        self._docs[key] = doc
        return doc

    def remove(self, path: str | os.PathLike[str]) -> list[Document]:
        """Forget disk documents deleted on disk: the file, or everything under a directory."""
        keys = self._keys_under(os.path.abspath(path))
        return [self._docs.pop(key) for key in keys]

    def rename(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> list[Document]:
        """Move disk documents after a file or directory was moved on disk; returns them at their new place.

        A moved document replaces a disk document at its destination, but an open
        editor buffer there wins and the moved copy is dropped. Moved documents go
        to the end of the iteration order. Contents are kept: a move over a file
        whose content the caller cares about should be followed by a re-read.
        """
        old_key, new_key = os.path.abspath(old), os.path.abspath(new)
        keys = self._keys_under(old_key)
        moved = []
        for key in keys:
            doc = self._docs.pop(key)
            target = new_key + key[len(old_key) :]
            existing = self._docs.get(target)
            if existing is not None and existing.source == "editor":
                continue
            self._docs.pop(target, None)
            self._docs[target] = replace(doc, uri=path_to_uri(target), path=Path(target))
            moved.append(self._docs[target])
        return moved

    def _keys_under(self, key: str) -> list[str]:
        """Keys of disk documents at ``key`` or, if it is a directory, below it."""
        return keys_under((k for k, d in self._docs.items() if d.source == "disk"), key)

    def _editor_doc(self, uri: str) -> tuple[str, Document]:
        key = _uri_key(uri)
        doc = self._docs.get(key)
        if doc is None:
            raise DocumentError(f"unknown document {uri}")
        if doc.source != "editor":
            raise DocumentError(f"{uri} is not open in the editor")
        return key, doc


def _uri_key(uri: str) -> str:
    path = uri_to_path(uri)
    return uri if path is None else str(path)
