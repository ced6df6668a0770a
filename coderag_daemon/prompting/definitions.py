"""Definitions of the names used above the cursor, for a completion's request tail.

A small model completes a call well when it sees what it calls: a function's parameters, a class's
constructor. The file context holds other files whole, but the file being edited shows only through
the cursor window, and files outside the context not at all. So the names used above the cursor
(called names, classes, imported names) are looked up in the workspace index, and their signatures
and first docstring lines, not their bodies, go in the tail within a small token budget.

The names come from the window's lines above the cursor's line: typing on a line leaves them, and so
the tail's start, the same, and only the tail from the cursor on is reprocessed.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .completion import Window

_CALLED = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_CLASS_LIKE = re.compile(r"\b([A-Z]\w*[a-z]\w*)\b")
_IMPORTED = re.compile(r"^\s*from\s+[\w.]+\s+import\s+\(?([\w\s,]+)", re.M)
_DEFINED_HERE = re.compile(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", re.M)
_COMMON = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self", "cls", "super"}
MAX_NAMES = 24
"""Names looked up at most per completion: the nearest ones; each look-up is an index search."""


class Found(Protocol):
    """What a look-up returns (`index.Hit` fits): a chunk of a file and where it is."""

    @property
    def path(self) -> Path: ...
    @property
    def display(self) -> str: ...
    @property
    def start_line(self) -> int: ...
    @property
    def text(self) -> str: ...


Find = Callable[[str], Iterable[Found]]
"""The chunks that may define a name, best first (the workspace index's search)."""


def names_used(window: Window, lines: int = 32) -> list[str]:
    """Called names, class-like names and imported names of the `lines` window lines above the cursor's
    line, nearest first; names defined in the window, keywords and builtins are left out."""
    above = window.prefix.split("\n")[:-1][-lines:]
    defined = set(_DEFINED_HERE.findall(window.prefix))
    out: dict[str, None] = {}
    for line in reversed(above):
        found = [m.group(1) for m in _CALLED.finditer(line)] + _CLASS_LIKE.findall(line)
        found += [n for m in _IMPORTED.finditer(line) for n in re.findall(r"\w+", m.group(1)) if n != "as"]
        for name in found:
            if name not in _COMMON and name not in defined and len(name) > 2:
                out.setdefault(name)
    return list(out)[:MAX_NAMES]


@dataclass(frozen=True)
class Definition:
    name: str
    path: Path
    line: int
    """0-based, in `path`."""
    where: str
    """``path:line`` (1-based), as the model reads it."""
    text: str
    """The signature (a class's with its ``__init__``'s) and the first docstring line."""


def summarize(name: str, found: Found) -> Definition | None:
    """The definition of `name` in the chunk, cut to its signature and first docstring line."""
    lines = found.text.split("\n")
    pattern = re.compile(rf"^\s*(?:async\s+)?(def|class)\s+{re.escape(name)}\b")
    at = next((i for i, line in enumerate(lines) if pattern.match(line)), None)
    if at is None:
        return None
    head = _signature(lines, at)
    kind = pattern.match(lines[at])
    if kind is not None and kind.group(1) == "class":
        init = next((i for i in range(at + 1, len(lines)) if re.match(r"\s+def __init__\b", lines[i])), None)
        if init is not None:
            head += _signature(lines, init, with_doc=False)
    indent = len(lines[at]) - len(lines[at].lstrip())
    text = "\n".join(line[indent:] for line in head)
    line = found.start_line + at
    return Definition(name, found.path, line, f"{found.display}:{line + 1}", text)


def _signature(lines: list[str], at: int, with_doc: bool = True) -> list[str]:
    """The lines from `at` to the one that ends the header (its ':' outside brackets), at most 8, and
    the first line of the docstring that follows, quotes closed."""
    depth, end = 0, at
    for end in range(at, min(at + 8, len(lines))):
        code = re.sub(r"""(['"]).*?\1|#.*""", "", lines[end])
        depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
        if depth <= 0 and code.rstrip().endswith(":"):
            break
    out = lines[at : end + 1]
    following = next((ln for ln in lines[end + 1 :] if ln.strip()), "")
    quote = following.strip()[:3]
    if with_doc and quote in ('"""', "'''"):
        first = following.strip()[3:].split(quote)[0].strip() or "..."
        indent = following[: len(following) - len(following.lstrip())]
        out.append(f"{indent}{quote}{first}{quote}")
    return out


def definitions(
    names: list[str],
    find: Find,
    count_tokens: Callable[[str], int],
    budget: int,
    skip: Callable[[Definition], bool] = lambda _: False,
) -> str:
    """The definitions of `names` found by `find` (the first one `skip` does not reject: the model sees
    it already), in the order of `names`, as long as they fit `budget` tokens together; "" for none."""
    parts: list[str] = []
    used = 0
    for name in names:
        definition = next((d for f in find(name) if (d := summarize(name, f)) is not None and not skip(d)), None)
        if definition is None:
            continue
        part = f"# {definition.where}\n{definition.text}\n"
        cost = count_tokens(part)
        if used + cost > budget:
            continue
        parts.append(part)
        used += cost
    return "\n".join(parts)
