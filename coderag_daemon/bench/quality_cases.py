"""The completion quality cases: real lines typed by real authors, taken from PyPI release histories.

Each package's change between two releases is replayed as `replay.py` does (the newer text typed over
the older one, hunk by hunk, a line at a time). Before a line is typed, a completion is asked at a
point of it, and its suggestion is scored against what the author typed from there:

- `next line`: an empty line opened with the author's indentation; a whole line is expected;
- `next block`: the same where a block is expected (the line above opens one, ending in ':');
  the author's block is expected;
- partial words, the line cut where a person stops typing: `line start` (inside the first word of an
  unindented line), `after indentation` (inside the first word of an indented line), `mid-identifier`
  (inside a later name), `after operator` (just after '=', '(', '.', ...), `inside string`.

Every candidate of every line is listed in a fixed order; `select` draws `n` of them with a fixed seed,
spread evenly over the categories, so two runs with the same arguments ask the same completions.
"""

from __future__ import annotations

import difflib
import random
import re
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from .replay import wheel_sources
from .workload import Complete, Edit, Step, Workload, fit_files

LINE_CATEGORIES = ("next line", "next block")
PARTIAL_CATEGORIES = ("line start", "after indentation", "mid-identifier", "after operator", "inside string")
CATEGORIES = LINE_CATEGORIES + PARTIAL_CATEGORIES
FOLLOWING_LINES = 8
"""Lines of what the author typed next that a suggestion is compared with (its accepted characters)."""


@dataclass(frozen=True)
class Package:
    name: str
    old: str
    new: str

    def describe(self) -> str:
        return f"{self.name} {self.old} → {self.new}"


PACKAGES = (
    Package("platformdirs", "4.2.2", "4.3.2"),
    Package("tomli", "2.0.1", "2.1.0"),
    Package("filelock", "3.13.1", "3.14.0"),
    Package("packaging", "23.2", "24.0"),
)
"""Small pure-Python packages whose releases hold a few hundred typed lines: typing, features, fixes."""


@dataclass(frozen=True)
class Case:
    package: str
    path: str
    new_line: int
    """The line's index in the newer release (identifies the case across runs)."""
    category: str
    typed: str
    """The line as typed when the completion is asked; the cursor is at its end."""
    expected: str
    """What the author typed from the cursor on: the rest of the line, then the following lines."""
    block: str
    """For `next block`: the author's block from the cursor on (lines until one dedents below it)."""

    @property
    def key(self) -> str:
        return f"{self.package}:{self.path}:{self.new_line + 1}:{self.category}"


_OPERATOR_END = re.compile(r"(?:[=(\[{,.+\-*/%<>:]|->) ?$")
_NAME = re.compile(r"[A-Za-z_]\w*")
_STRING = re.compile(r"""(?<![\w'"])(['"])(?:(?!\1).){4,}\1""")


def cuts(line: str) -> dict[str, int]:
    """Where a person could stop typing `line`, one cut per partial-word category that fits (the cut
    is the number of characters typed); a fixed rule, so the same line always gives the same cuts."""
    body = line.lstrip(" ")
    indent = len(line) - len(body)
    out: dict[str, int] = {}
    if body.startswith("#") or not body:
        return out
    first = _NAME.match(body)
    if first and len(first.group()) >= 3:
        out["after indentation" if indent else "line start"] = indent + (len(first.group()) + 1) // 2
    later = [m for m in _NAME.finditer(line, indent + (first.end() if first else 0)) if len(m.group()) >= 4]
    later = [m for m in later if not _inside_string(line, m.start())]
    if later:
        m = later[0]
        out["mid-identifier"] = m.start() + len(m.group()) // 2
    for m in re.finditer(r"[=(\[{,.]|->", line):
        end = m.end() + (1 if line[m.end() : m.end() + 1] == " " else 0)
        if end >= len(line.rstrip()) or _inside_string(line, m.start()) or end <= indent:
            continue
        if _OPERATOR_END.search(line[:end]) and not line[end].isspace():
            out["after operator"] = end
            break
    s = _STRING.search(line, indent)
    if s:
        out["inside string"] = s.start() + 1 + (s.end() - s.start() - 2) // 2
    return out


def _inside_string(line: str, at: int) -> bool:
    return any(m.start() < at < m.end() for m in _STRING.finditer(line))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], start: int) -> list[str]:
    """`lines[start]` and the lines after it that stay inside its block (blank ones included)."""
    indent = _indent(lines[start])
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) >= indent):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def line_cases(package: str, path: str, new_line: int, typed_lines: list[str], k: int) -> list[Case]:
    """Every candidate case of `typed_lines[k]`, the k-th line of a hunk the author typed."""
    line = typed_lines[k]
    if not line.strip():
        return []
    following = typed_lines[k : k + FOLLOWING_LINES]
    out = []
    previous = next((ln for ln in reversed(typed_lines[:k]) if ln.strip()), "")
    indent = _indent(line)
    opens_block = previous.rstrip().endswith(":") and indent > _indent(previous) and k > 0
    category = "next block" if opens_block else "next line"
    rest = "\n".join(following)[indent:]
    block = "\n".join(_block(typed_lines, k))[indent:] if opens_block else ""
    out.append(Case(package, path, new_line, category, line[:indent], rest, block))
    for name, at in cuts(line).items():
        out.append(Case(package, path, new_line, name, line[:at], "\n".join(following)[at:], ""))
    return out


@dataclass(frozen=True)
class Hunk:
    path: str
    old_start: int
    old_end: int
    new_start: int
    lines: list[str]
    """The newer release's lines that replace old lines [old_start, old_end)."""


def hunks(old: dict[str, str], new: dict[str, str]) -> list[Hunk]:
    """The changed files' hunks, file by file (sorted), top to bottom."""
    out = []
    for rel in sorted(rel for rel in old.keys() & new.keys() if old[rel] != new[rel]):
        a, b = old[rel].split("\n"), new[rel].split("\n")
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if tag != "equal":
                out.append(Hunk(rel, i1, i2, j1, b[j1:j2]))
    return out


def candidates(package: str, changes: list[Hunk]) -> list[Case]:
    return [
        case
        for h in changes
        for k in range(len(h.lines))
        for case in line_cases(package, h.path, h.new_start + k, h.lines, k)
    ]


def select(cases: list[Case], n: int, seed: int) -> list[Case]:
    """`n` cases drawn with `seed`, the categories taking turns (one that runs out leaves its turns to
    the others), returned in the order they are replayed."""
    rng = random.Random(seed)
    pools = {c: [case for case in cases if case.category == c] for c in CATEGORIES}
    for pool in pools.values():
        rng.shuffle(pool)
    chosen: set[str] = set()
    while len(chosen) < n and any(pools.values()):
        for pool in pools.values():
            if pool and len(chosen) < n:
                chosen.add(pool.pop().key)
    return [case for case in cases if case.key in chosen]


@dataclass
class QualityWorkload:
    workload: Workload
    cases: list[Case]
    """One per `Complete` step, in order."""


def package_workload(
    package: Package,
    changes: list[Hunk],
    old: dict[str, str],
    cases: list[Case],
    count_tokens: Callable[[str], int],
    context_tokens: int,
) -> QualityWorkload:
    """The editing session of `package` that asks `cases`: the files holding a case are open whole,
    with the package's other files cut to fit `context_tokens` in all; every hunk of those files is
    typed, and each case is asked just before its line is typed."""
    by_line: dict[tuple[str, int], list[Case]] = {}
    for case in cases:
        by_line.setdefault((case.path, case.new_line), []).append(case)
    typed_in = sorted({case.path for case in cases})
    budget = context_tokens - sum(count_tokens(old[rel]) for rel in typed_in)
    others = [(rel, text) for rel, text in sorted(old.items()) if rel not in typed_in and text.strip()]
    others = others[: max(budget, 0) // 512]  # at least 512 tokens of each: a few files, not crumbs of all
    extra = fit_files(dict(others), count_tokens, budget) if others else {}
    files = dict(sorted({**extra, **{rel: old[rel] for rel in typed_in}}.items()))

    steps: list[Step] = []
    asked: list[Case] = []
    shift: dict[str, int] = {}
    for h in changes:
        if h.path not in typed_in:
            continue
        at = h.old_start + shift.get(h.path, 0)
        if h.old_end > h.old_start:
            steps.append(Edit(h.path, at, at + h.old_end - h.old_start, ""))
        for k, text in enumerate(h.lines):
            present = False  # the line exists in the document (a case typed part of it)
            for case in by_line.get((h.path, h.new_start + k), []):
                steps.append(Edit(h.path, at + k, at + k + present, case.typed + "\n"))
                steps.append(Complete(h.path, at + k, len(case.typed)))
                asked.append(case)
                present = True
            steps.append(Edit(h.path, at + k, at + k + present, text + "\n"))
        shift[h.path] = shift.get(h.path, 0) + len(h.lines) - (h.old_end - h.old_start)
    workload = Workload(
        "quality",
        files,
        steps,
        f"{package.describe()} (PyPI wheels): {len(asked)} completions in {', '.join(typed_in)}; "
        f"{len(files)} files open",
        [f"{c.path}:{c.new_line + 1} {c.category}" for c in asked],
    )
    return QualityWorkload(workload, asked)


def quality_workloads(
    n: int,
    seed: int,
    count_tokens: Callable[[str], int],
    context_tokens: int,
    replayed: Collection[str] | None = None,
    cache: Path | None = None,
) -> list[tuple[Package, QualityWorkload]]:
    """`n` cases drawn over all `PACKAGES`, one editing session per package that has some, of the
    `replayed` packages only (default: all): the draw stays the full run's, so runs of some packages
    ask the same cases as a full run does."""
    cache = cache or Path(tempfile.gettempdir()) / "coderag-bench-replay"
    sources = {p.name: (wheel_sources(p.name, p.old, cache), wheel_sources(p.name, p.new, cache)) for p in PACKAGES}
    changes = {p.name: hunks(*sources[p.name]) for p in PACKAGES}
    chosen = select([c for p in PACKAGES for c in candidates(p.name, changes[p.name])], n, seed)
    out = []
    for p in PACKAGES:
        mine = [c for c in chosen if c.package == p.name]
        if mine and (replayed is None or p.name in replayed):
            out.append(
                (p, package_workload(p, changes[p.name], sources[p.name][0], mine, count_tokens, context_tokens))
            )
    return out
