"""Pieces of a file that follow its structure, with exact line ranges for citations.

A question is usually answered by one definition, so Python files are cut at their top-level
definitions (a large class at its methods), and other files at top-level blocks (a line at column 0
after a blank line); whatever is still too long is cut into windows of lines, and neighbouring
pieces too small to stand alone are merged. Every chunk is whole lines of the file: ``text`` is
exactly ``lines[start_line:end_line]``.

Python structure is read from indentation rather than with ``ast``: parsing builds an object per
expression and takes about ten times as long as the rest of indexing together, for boundaries that
indentation gives as well. Lines inside triple-quoted strings are never taken for boundaries. A
file that would confuse this (a triple quote inside a comment) only gets other boundaries; its
chunks are still exact lines.

Lines are 0-based and ranges half-open, as LSP counts them (a label for people adds one). Line
breaks are ``\\n``, ``\\r\\n`` and ``\\r``, as in LSP and in Python's parser, so a chunk's lines are
the lines the editor shows.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
_OTHER_BREAKS = re.compile("[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_TRIPLE_QUOTE = re.compile(r"\"\"\"|'''")
_DEFINITION = re.compile(r"[ \t]*(?:async[ \t]+)?(def|class)[ \t]+([A-Za-z_][A-Za-z0-9_]*)")
_METHOD_INDENT = re.compile(r"([ \t]+)(?:async[ \t]+)?def[ \t]")
_TITLE_CHARS = 80
_NOT_A_STATEMENT = frozenset(("", " ", "\t", "\r", "\n", "#", ")", "]", "}"))
"""What the first character after the indentation of a line that starts no statement can be."""

Span = tuple[int, int, str]
"""(start_line, end_line, title): a half-open range of lines."""


@dataclass(frozen=True)
class ChunkOptions:
    max_lines: int = 80
    """A definition or block longer than this is cut (a class at its methods, the rest in windows)."""
    window_lines: int = 50
    """Lines of a window when a long stretch has no structure to cut at."""
    min_lines: int = 8
    """A piece shorter than this is merged with the next one (if the two fit in ``max_lines``), so
    that a run of one-line declarations or short paragraphs is one chunk rather than many."""


@dataclass(frozen=True, slots=True)
class Chunk:
    start_line: int
    """First line, 0-based."""
    end_line: int
    """Line after the last one (half-open range)."""
    title: str
    """What the chunk is, for people: ``def verify_token``, ``class Settings``, or its first line."""
    text: str


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` with their line breaks; joined, they give ``text`` back."""
    if _OTHER_BREAKS.search(text):  # str.splitlines would break these lines too
        return _LINE.findall(text)
    return text.splitlines(keepends=True)


def chunk_text(path: str, text: str, options: ChunkOptions | None = None) -> list[Chunk]:
    """The chunks of a file, in order; blank lines between chunks belong to none."""
    options = options or ChunkOptions()
    lines = split_lines(text)
    if path.endswith((".py", ".pyi")):
        in_string = _lines_in_strings(text, lines)
        spans = _python_spans(lines, in_string, 0, len(lines), "", "", options)
    else:
        spans = _block_spans(lines, 0, len(lines), options)
    chunks = []
    for start, end, title in _merge_small(spans, options):
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if start < end:
            chunks.append(Chunk(start, end, title or lines[start].strip()[:_TITLE_CHARS], "".join(lines[start:end])))
    return chunks


def _lines_in_strings(text: str, lines: list[str]) -> bytearray:
    """1 for each line that starts inside a triple-quoted string."""
    inside = bytearray(len(lines))
    starts = list(accumulate(map(len, lines), initial=0))
    quote, opened = "", 0
    for match in _TRIPLE_QUOTE.finditer(text):
        if not quote:
            quote, opened = match.group(), match.start()
        elif match.group() == quote:
            first, last = bisect_right(starts, opened), bisect_right(starts, match.start())
            inside[first:last] = b"\1" * (last - first)
            quote = ""
    if quote:
        first = bisect_right(starts, opened)
        inside[first:] = b"\1" * (len(lines) - first)
    return inside


def _python_spans(
    lines: list[str], in_string: bytearray, start: int, end: int, indent: str, qualifier: str, options: ChunkOptions
) -> list[Span]:
    """Lines ``[start, end)`` holding statements at indentation ``indent``: one span per definition
    (with its decorators and the comment lines right above it), blocks for the statements between."""
    level = len(indent)
    items = [start]  # first line of each statement, comments right above and decorators included
    decorated = False
    statements = [
        i
        for i in range(start, end)
        if lines[i][level : level + 1] not in _NOT_A_STATEMENT and not in_string[i] and lines[i].startswith(indent)
    ]
    for i in statements:
        if not decorated:
            first = i
            while first > start and lines[first - 1].startswith(indent) and lines[first - 1][level : level + 1] == "#":
                first -= 1
            if first > items[-1]:
                items.append(first)
        decorated = lines[i][level : level + 1] == "@"
    header_title = f"class {qualifier[:-1]}" if qualifier else ""
    spans: list[Span] = []
    block_start = start
    for item, item_end in zip(items, [*items[1:], end], strict=True):
        definition = _definition_at(lines, item, item_end, level)
        if definition is None:
            continue
        kind, name, header = definition
        if item > block_start:
            spans += _block_spans(lines, block_start, item, options, header_title)
        block_start = item_end
        if kind == "class" and item_end - item > options.max_lines:
            inner = next(
                (m for i in range(header + 1, item_end) if not in_string[i] and (m := _METHOD_INDENT.match(lines[i]))),
                None,
            )
            if inner is not None and len(inner.group(1)) > level:
                spans += _python_spans(lines, in_string, item, item_end, inner.group(1), f"{qualifier}{name}.", options)
                continue
        spans += _windows(item, item_end, f"{kind} {qualifier}{name}", options)
    if block_start < end:
        spans += _block_spans(lines, block_start, end, options, header_title)
    return spans


def _definition_at(lines: list[str], start: int, end: int, level: int) -> tuple[str, str, int] | None:
    """(kind, name, line) of the ``def`` or ``class`` line of the statement at ``[start, end)``,
    past its comments and decorators; None if the statement is something else."""
    for i in range(start, end):
        head = lines[i][level : level + 1]
        if head in ("#", "@") or not lines[i].strip():
            continue
        match = _DEFINITION.match(lines[i], level)
        return (match.group(1), match.group(2), i) if match else None
    return None


def _block_spans(lines: list[str], start: int, end: int, options: ChunkOptions, title: str = "") -> list[Span]:
    """Lines ``[start, end)`` cut where a line starts at column 0 after a blank line, long blocks
    cut into windows."""
    starts = [start] + [i for i in range(start + 1, end) if lines[i][:1].strip() and not lines[i - 1].strip()]
    return [span for s, e in zip(starts, [*starts[1:], end], strict=True) for span in _windows(s, e, title, options)]


def _windows(start: int, end: int, title: str, options: ChunkOptions) -> list[Span]:
    """``[start, end)`` as one span, or as equal windows of at most ``window_lines`` if longer than ``max_lines``."""
    if end - start <= options.max_lines:
        return [(start, end, title)]
    count = -(-(end - start) // options.window_lines)
    step = -(-(end - start) // count)
    return [(s, min(s + step, end), title) for s in range(start, end, step)]


def _merge_small(spans: list[Span], options: ChunkOptions) -> list[Span]:
    """Merge each span shorter than ``min_lines`` with the next one while the two fit in ``max_lines``."""
    merged: list[Span] = []
    for start, end, title in spans:
        if merged:
            last_start, last_end, last_title = merged[-1]
            if last_end - last_start < options.min_lines and end - last_start <= options.max_lines:
                titles = ", ".join(t for t in (last_title, title) if t)
                merged[-1] = (last_start, end, titles[:_TITLE_CHARS])
                continue
        merged.append((start, end, title))
    return merged
