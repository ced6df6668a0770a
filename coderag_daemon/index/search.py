"""The query side of the index: ranked chunks with their current text.

The index keeps each chunk's line range and terms, not its text: a search reads the few files it
returns (a millisecond or so) and checks their hash, so a hit's text is always the file's current
lines at its range, and memory stays at about a third of the tree's size. Only editor buffers,
which exist nowhere else, are kept as text.

A search runs on the caller's thread: it holds the entries' lock only to rank, and reads the files
after releasing it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..workspace.admission import AdmissionPolicy
from ..workspace.documents import path_to_uri
from ..workspace.files import read_capped, utf16_len
from . import store
from .chunking import split_lines
from .entries import Entry, IndexEntries
from .identifiers import terms


@dataclass(frozen=True)
class Hit:
    """One ranked chunk. Lines are 0-based, ``end_line`` exclusive, as in LSP."""

    path: Path
    """Absolute path of the file."""
    display: str
    """The path relative to its workspace root, as the model reads it in file headers."""
    start_line: int
    end_line: int
    title: str
    text: str
    score: float

    @property
    def label(self) -> str:
        """``path:line`` or ``path:first-last`` with 1-based lines, for the model and for people."""
        first, last = self.start_line + 1, self.end_line
        return f"{self.display}:{first}" if first == last else f"{self.display}:{first}-{last}"

    @property
    def uri(self) -> str:
        return path_to_uri(self.path)

    def lsp_range(self) -> dict[str, dict[str, int]]:
        """The chunk's LSP range, ending at the end of its last line (never past the end of the file)."""
        last = split_lines(self.text)[-1].rstrip("\r\n") if self.text else ""
        return {
            "start": {"line": self.start_line, "character": 0},
            "end": {"line": max(self.end_line - 1, self.start_line), "character": utf16_len(last)},
        }

    def to_json(self, *, with_text: bool = True) -> dict[str, Any]:
        """For the protocol: ``uri``, ``path`` (display), ``range``, ``label``, ``title``, ``score``, ``text``."""
        out: dict[str, Any] = {
            "uri": self.uri,
            "path": self.display,
            "range": self.lsp_range(),
            "label": self.label,
            "title": self.title,
            "score": round(self.score, 4),
        }
        if with_text:
            out["text"] = self.text
        return out


def find(
    entries: IndexEntries,
    policy: AdmissionPolicy,
    query: str,
    k: int,
    exclude_paths: Iterable[str],
    changed: Callable[[str], None],
) -> list[Hit]:
    """The ``k`` chunks that best match ``query``, best first, leaving out the chunks of
    ``exclude_paths`` (absolute). A file whose indexed text is no longer on disk is left out too,
    and passed to ``changed`` (to be indexed again)."""
    query_terms = terms(query)
    if not query_terms or k <= 0:
        return []
    ranked = entries.rank(query_terms, k, exclude_paths)
    lines: dict[str, list[str] | None] = {}
    for _, key, _, entry in ranked:
        if key not in lines:
            lines[key] = _current_lines(key, entry, policy.options.max_file_bytes, changed)
    hits = []
    for score, key, (start, end, title), _ in ranked:
        if (text := lines[key]) is not None:
            hits.append(Hit(Path(key), policy.display_path(key), start, end, title, "".join(text[start:end]), score))
    return hits


def _current_lines(key: str, entry: Entry, max_bytes: int, changed: Callable[[str], None]) -> list[str] | None:
    """The lines of the indexed text of a file; None, with ``changed(key)`` called, if the file no
    longer holds that text."""
    if entry.text is not None:
        return split_lines(entry.text)
    data = read_capped(key, max_bytes)
    if data is not None and store.digest(data) == entry.digest:
        try:
            return split_lines(data.decode("utf-8-sig"))
        except UnicodeDecodeError:
            pass
    changed(key)
    return None
