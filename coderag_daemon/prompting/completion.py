"""Inline completion: what to ask the model, when to stop it, and what to show.

Plain text logic, no model: the cursor's prefix/suffix windows, the stop rule (end of the current
line, of the block by indentation where one is expected, or of an open parenthesis), what a
suggestion inserts (the generated text after the typed text the model had to write again), trimming
text that the suffix already holds, and the cache that answers typing through a shown suggestion
without a model call.
"""

from __future__ import annotations

import collections
import functools
import re
from dataclasses import dataclass

from .languages import line_comment


@dataclass(frozen=True)
class Brackets:
    """The brackets a text leaves open, strings and line comments skipped: where the cursor's
    statement goes on past its line (a call's arguments, a signature's parameters, a literal's
    items). Braces count only in languages whose line comment is not `//`: in the C family they
    open blocks, which the block rule handles."""

    comment: str = "#"
    """The language's line-comment marker (languages.line_comment)."""
    open: tuple[tuple[str, int], ...] = ()
    """The open brackets, innermost last, each with the indentation of the line it is on."""
    quote: str = ""
    """The quote of the string literal the text ends inside, "" if none."""

    def after(self, text: str) -> Brackets:
        """The state at the end of `text`, read on from this one."""
        stack, quote = list(self.open), self.quote
        lexeme = _lexeme(self.comment)
        pos, n = 0, len(text)
        while pos < n:
            if quote:
                pos, quote = _string_end(text, pos, quote)
                continue
            m = lexeme.search(text, pos)
            if m is None:
                break
            token, pos = m.group(), m.end()
            if token in _OPENERS:
                line = text.rfind("\n", 0, m.start()) + 1
                stack.append((token, _indent(text[line : m.start()])))
            elif token in _CLOSERS:
                del stack[-1:]
            elif token == self.comment:
                end = text.find("\n", pos)
                pos = n if end < 0 else end
            else:
                quote = token
        return Brackets(self.comment, tuple(stack), quote)


@dataclass(frozen=True)
class Window:
    prefix: str
    suffix: str
    first_line: int = 0  # the document line the prefix starts on
    head: str = ""
    """The file's import lines above `first_line` (see `file_head`): the window no longer shows them."""
    near: int = 0
    """Where in `prefix` the lines nearest the cursor start (see `cursor_window`)."""
    brackets: Brackets = Brackets()
    """The brackets the text before the cursor leaves open: a statement that goes on below it."""


@functools.cache
def _lexeme(comment: str) -> re.Pattern[str]:
    brackets = r"[()\[\]]" if comment == "//" else r"[()\[\]{}]"
    return re.compile(rf"\"\"\"|'''|[\"'`]|{brackets}|{re.escape(comment)}")


def _string_end(text: str, pos: int, quote: str) -> tuple[int, str]:
    """Where the string literal that `text` is inside at `pos` ends, and the quote still open
    there: a triple-quoted or backquoted string runs over lines, others end with their line."""
    m = _STRING_BODY[quote].match(text, pos)
    end = m.end() if m else pos
    if text.startswith(quote, end):
        return end + len(quote), ""
    if end < len(text) and text[end] == "\n":  # a one-line string left open
        return end, ""
    return len(text), quote


_STRING_BODY = {
    '"': re.compile(r'(?:[^"\\\n]|\\[\s\S])*'),
    "'": re.compile(r"(?:[^'\\\n]|\\[\s\S])*"),
    "`": re.compile(r"(?:[^`\\]|\\[\s\S])*"),
    '"""': re.compile(r'(?:[^"\\]|\\[\s\S]|"(?!""))*'),
    "'''": re.compile(r"(?:[^'\\]|\\[\s\S]|'(?!''))*"),
}


def cursor_window(
    text: str,
    offset: int,
    prefix_lines: int = 64,
    suffix_lines: int = 4,
    anchor: int = 32,
    kept: int | None = None,
    near_lines: int = 8,
    kept_near: int | None = None,
    near_growth: int = 32,
    comment: str = "#",
) -> Window:
    """The text around the cursor that goes in the request tail: at least `prefix_lines` whole lines
    above the cursor's line and `suffix_lines` below.

    The first line is anchored to a multiple of `anchor`, so it stays put while the user types and
    adds lines: the tail then changes only from the cursor on, and only that part is reprocessed.
    `kept`, the line the previous window began on, is used instead while it leaves between
    `prefix_lines - anchor` and `prefix_lines + anchor` lines above the cursor: deleting lines would
    otherwise pull the grid line back and change the whole window. The suffix is short: a layout
    that puts it after the prefix reprocesses it on every keystroke, and one that puts it first
    (qwen-repo's) reprocesses everything after it whenever the cursor moves to other text.

    So the window also marks where its lines nearest the cursor start (`Window.near`): at least
    `near_lines` above the cursor's line, on a multiple of `near_lines`. A suffix-first layout puts
    only those after the suffix; the lines above them go before it, and stay cached while the
    cursor moves within the same few lines. `kept_near`, the line the previous window's near lines
    began on, is used instead while it leaves between `near_lines // 2` and `near_lines +
    near_growth` lines above the cursor: lines the user types join the near lines rather than move
    them, which would reprocess the suffix and all of them every `near_lines` lines, and a cursor
    back on a line or two above a fresh start (a line opened, then the one above edited; a preload
    aims at the line after an edit) keeps it too.

    The whole text before the cursor is read for the brackets it leaves open (`comment`, the
    language's line comment, marks what to skip): the window may begin inside a statement or a
    string, the file does not.
    """
    before, after = text[:offset], text[offset:]
    cursor_line = before.count("\n")
    first = _start_line(cursor_line, prefix_lines, anchor, kept, range(prefix_lines - anchor, prefix_lines + anchor))
    start = _nth(before, "\n", first) if first else 0
    prefix = before[start:]
    end = _nth(after, "\n", suffix_lines + 1)
    near_line = _start_line(
        cursor_line, near_lines, near_lines, kept_near, range(near_lines // 2, near_lines + near_growth)
    )
    near = _nth(prefix, "\n", near_line - first) if near_line > first else 0
    brackets = Brackets(comment).after(before)
    return Window(prefix, after[:end], first, file_head(before[:start]), near, brackets)


_IMPORT = re.compile(
    r"import\s|from\s+[\w.]+\s+import\b|#include\b|#import\b|use\s+[\w:]+|using\s+[\w.]+\s*;"
    r"|(?:const|let|var)\s+.*=\s*require\("
)
_OPENERS, _CLOSERS = "([{", ")]}"


def file_head(text: str, max_lines: int = 128) -> str:
    """The import statements among the first `max_lines` lines of `text` (the file above the cursor
    window), whole and in order, each line ending in a newline.

    Below its first screen a file shows only through the cursor window, and its imports are what
    the lines being written use most: the modules and names in scope. Only import statements are
    kept (not docstrings, licence headers or constants), so the few tokens they take stay the same
    while the user types anywhere below them."""
    out: list[str] = []
    depth, continued = 0, False
    for line in text[: _nth(text, "\n", max_lines)].splitlines()[:max_lines]:  # not the whole file
        if not (depth > 0 or continued or _IMPORT.match(line)):
            continue
        out.append(line + "\n")
        depth = max(0, depth + sum(map(line.count, _OPENERS)) - sum(map(line.count, _CLOSERS)))
        continued = line.rstrip().endswith("\\")
    return "".join(out)


class WindowStarts:
    """The lines each document's last cursor window and its near lines began on, followed through
    edits above them, so the next window of that document starts on the same text whenever it
    still fits (see `cursor_window`).

    A line is found again by its text (three lines, searched outwards from where it was), so lines
    added or deleted above the window move the anchor with them instead of changing the window.
    """

    KEY_LINES = 3

    def __init__(self, search_lines: int = 96) -> None:
        self._search = search_lines
        self._last: dict[str, tuple[tuple[int, list[str]], tuple[int, list[str]]]] = {}

    def window(self, uri: str, text: str, offset: int) -> Window:
        lines = text.split("\n")
        first, near = self._last.get(uri, (None, None))
        window = cursor_window(
            text, offset, kept=self._find(first, lines), kept_near=self._find(near, lines), comment=line_comment(uri)
        )
        near_line = window.first_line + window.prefix.count("\n", 0, window.near)
        self._last[uri] = (self._key(window.first_line, lines), self._key(near_line, lines))
        return window

    def forget(self, uri: str) -> None:
        self._last.pop(uri, None)

    def _key(self, line: int, lines: list[str]) -> tuple[int, list[str]]:
        return line, lines[line : line + self.KEY_LINES]

    def _find(self, anchor: tuple[int, list[str]] | None, lines: list[str]) -> int | None:
        if anchor is None:
            return None
        line, key = anchor
        for distance in range(self._search + 1):
            for candidate in (line - distance, line + distance):  # the nearer one above first
                if 0 <= candidate < len(lines) and lines[candidate : candidate + len(key)] == key:
                    return candidate
        return None


def _start_line(cursor_line: int, above: int, step: int, kept: int | None, keep: range) -> int:
    """Where a part of the window starts: `kept` while the cursor's line is `keep` lines below it,
    otherwise the multiple of `step` at least `above` lines above the cursor's line."""
    if kept is not None and cursor_line - kept in keep:
        return kept
    return max(0, (cursor_line - above) // step * step)


def _nth(s: str, ch: str, n: int) -> int:
    i = -1
    for _ in range(n):
        i = s.find(ch, i + 1)
        if i < 0:
            return len(s)
    return i + 1


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


@dataclass(frozen=True)
class StopRule:
    """Where a completion at this cursor ends: one line, unless a block is what comes next.

    A block is expected after a line that opens one (the cursor at the end of `def f():`, or on an
    empty line below it) and on an empty line at the top level (a new statement, function or class);
    it ends where a line dedents out of it, or, at the top level, at a blank line after a finished
    statement. Where a parenthesis is open at the cursor (a call's arguments, a signature's
    parameters, a condition over several lines), the completion goes on to the line that closes it:
    the rest of a unit the user writes at once; not if its first line is empty (the cursor's line
    was done). Inside a literal's brackets it is one line, one item: a list grows an item at a time,
    and a line ending in `:` there is a key, not a block; only the empty line right after the
    opening bracket gets the block that bracket opens, the items before its closing line. Anywhere
    else, text before the cursor on its line (a statement being written) or after it (mid-line), or
    an empty line in a body, the completion is that one line: what the user is writing, shown
    without waiting for lines that nobody asked for.
    """

    single_line: bool
    block_indent: int
    """Lines indented less than this end the block (or the statement)."""
    statement: Brackets | None = None
    """The brackets open at the cursor, when the completion goes on to close the innermost one."""

    @classmethod
    def at(cls, window: Window) -> StopRule:
        line_after = window.suffix.split("\n", 1)[0]
        current = window.prefix.rsplit("\n", 1)[-1]
        if line_after.strip():
            return cls(single_line=True, block_indent=_indent(current))
        brackets = window.brackets
        if brackets.open and brackets.open[-1][0] == "(":
            return cls(single_line=False, block_indent=brackets.open[-1][1], statement=brackets)
        if current.strip():  # after text: a block only when the line opens one (its body)
            opens = not brackets.open and current.rstrip().endswith(":")  # not a dict's key
            return cls(single_line=not opens, block_indent=_indent(current) + 1)
        # an empty line: the block is the one the previous non-empty line opens or continues
        previous = next((ln for ln in reversed(window.prefix.split("\n")[:-1]) if ln.strip()), "")
        opens = previous.rstrip().endswith((":", "{", "(", "["))
        indent = max(_indent(previous) + (4 if opens else 0), len(current))
        return cls(single_line=not opens and indent > 0, block_indent=indent)

    def cut(self, generated: str, final: bool = False) -> int | None:
        """Length of `generated` to keep, or None to go on generating (or, when `final`, to keep it
        all: nothing more comes, so its last line is whole)."""
        if self.single_line:
            nl = generated.find("\n")
            return nl if nl >= 0 else None
        if self.statement is not None:
            return self._statement_end(generated, final)
        lines = generated.split("\n")
        pos = len(lines[0]) + 1
        for i, line in enumerate(lines[1:], start=1):
            complete = final or i < len(lines) - 1  # else the last piece may still grow
            if complete and line.strip() and _indent(line) < self.block_indent:
                return pos - 1
            if complete and not line.strip() and self.block_indent == 0 and lines[i - 1].strip():
                return pos - 1
            pos += len(line) + 1
        return None

    def _statement_end(self, generated: str, final: bool) -> int | None:
        """`cut` inside a parenthesis: through the line that closes it; before a blank line or one
        that dedents below the line it opened on; nothing when the first line is empty."""
        assert self.statement is not None
        brackets, depth, pos = self.statement, len(self.statement.open), 0
        lines = generated.split("\n")
        for i, line in enumerate(lines):
            if not (final or i < len(lines) - 1):
                return None  # the last piece may still grow
            if i == 0 and not line.strip():
                return 0
            if i > 0 and (not line.strip() or _indent(line) < self.block_indent):
                return pos - 1
            brackets = brackets.after(line + "\n")
            if len(brackets.open) < depth:
                return pos + len(line)
            pos += len(line) + 1
        return None

    def cut_short(self, generated: str) -> str:
        """`generated` as a budget (tokens or time) left it: cut where its last line, taken as
        whole, ends the completion; else without what it was still writing, the last line of
        several or the word the only line ends in. A name cut in the middle ('token_is' of
        'token_is_expired') would be inserted as a name that does not exist."""
        keep = self.cut(generated, final=True)
        if keep is not None:
            return generated[:keep]
        head, newline, _ = generated.rpartition("\n")
        return head if newline else _LAST_WORD.sub("", generated)


_LAST_WORD = re.compile(r"\w+\Z")


def continuation(healed: str, generated: str) -> str:
    """What a suggestion inserts at the cursor: the generated text after `healed`, the end of the
    typed text that the prompt left out and the model was held to write first (token healing, see
    prompts.PromptLayout.healed_text). Generated text that does not start with it would not go on
    from what is typed (the generation stopped before it was written): then there is no suggestion."""
    return generated[len(healed) :] if generated.startswith(healed) else ""


def trim_suffix_overlap(completion: str, suffix: str) -> str:
    """Drop the end of `completion` that the text after the cursor already holds: closing brackets
    typed by the editor, or whole lines the model repeated from below the cursor."""
    completion = completion.rstrip()
    head = suffix.lstrip(" \t")
    for k in range(min(len(completion), len(head)), 0, -1):
        if completion.endswith(head[:k]) and (k > 2 or not head[:k].isalnum()):
            kept = completion[:-k]
            return kept.rstrip() if not kept.rsplit("\n", 1)[-1].strip() else kept
    return completion


@dataclass
class _Shown:
    uri: str
    before: str
    after: str
    text: str


class TypeThroughCache:
    """Suggestions recently shown. When the user types the start of one, the rest is still the
    answer: no model call, and no flicker. Not thread-safe: the event loop's alone (other threads
    hand a `clear` over with `call_soon_threadsafe`)."""

    def __init__(self, size: int = 8) -> None:
        self._items: collections.deque[_Shown] = collections.deque(maxlen=size)

    def remember(self, uri: str, before: str, after: str, text: str) -> None:
        if text:
            self._items.append(_Shown(uri, before, after, text))

    def lookup(self, uri: str, before: str, after: str) -> str | None:
        for item in reversed(self._items):
            if item.uri != uri or item.after != after or not before.startswith(item.before):
                continue
            typed = before[len(item.before) :]
            if item.text.startswith(typed) and len(typed) < len(item.text):
                return item.text[len(typed) :]
        return None

    def clear(self) -> None:
        self._items.clear()
