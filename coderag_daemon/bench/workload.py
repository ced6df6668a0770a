"""The comparison's workloads: files opened in an editor and a script of edits, completions and chats.

Every side replays the same script. A `Workload` is plain data (file texts and steps); `Editor` is one
side's copy of the documents, edited as the script says, and `fixed_order_request` is what a
llama.vscode-style client sends for a completion: the other files whole, in the order they were
opened, then the current file's lines around the cursor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# llama.vscode's defaults: lines of the current file before and after the cursor line.
VSCODE_PREFIX_LINES = 256
VSCODE_SUFFIX_LINES = 64


@dataclass(frozen=True)
class Edit:
    """Replace lines [line, end_line) of `path` with `text` (which ends with a newline or is empty)."""

    path: str
    line: int
    end_line: int
    text: str


@dataclass(frozen=True)
class Complete:
    path: str
    line: int
    character: int


@dataclass(frozen=True)
class Chat:
    path: str
    line: int
    question: str


Step = Edit | Complete | Chat


@dataclass
class Workload:
    name: str
    files: dict[str, str]
    """Relative path → text, in the order the editor opens them."""
    steps: list[Step]
    description: str
    labels: list[str] = field(default_factory=list)
    """One label per Complete/Chat step, for tables ("cold", "mid edit", "line 3 of hunk 2", ...)."""

    def write(self, root: Path) -> None:
        for rel, text in self.files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)


class Editor:
    """One side's documents, edited by the script's steps."""

    def __init__(self, files: dict[str, str]) -> None:
        self.order = list(files)
        self.lines = {rel: text.split("\n") for rel, text in files.items()}

    def apply(self, edit: Edit) -> None:
        lines = self.lines[edit.path]
        new = edit.text.split("\n")[:-1] if edit.text else []
        lines[edit.line : edit.end_line] = new

    def text(self, rel: str) -> str:
        return "\n".join(self.lines[rel])


@dataclass(frozen=True)
class FixedOrderRequest:
    """llama.vscode's `/infill` fields: other files as `input_extra`, lines around the cursor."""

    extra: list[tuple[str, str]]
    prefix: str
    prompt: str
    suffix: str

    def as_infill(self) -> dict[str, object]:
        return {
            "input_extra": [{"filename": f, "text": t} for f, t in self.extra],
            "input_prefix": self.prefix,
            "prompt": self.prompt,
            "input_suffix": self.suffix,
        }


def fixed_order_request(editor: Editor, step: Complete) -> FixedOrderRequest:
    lines = editor.lines[step.path]
    current = lines[step.line]
    before = lines[max(0, step.line - VSCODE_PREFIX_LINES) : step.line]
    after = lines[step.line + 1 : step.line + 1 + VSCODE_SUFFIX_LINES]
    extra = [(rel, editor.text(rel)) for rel in editor.order if rel != step.path]
    return FixedOrderRequest(
        extra,
        "".join(ln + "\n" for ln in before),
        current[: step.character],
        current[step.character :] + "\n" + "\n".join(after),
    )


def chat_messages(editor: Editor, step: Chat) -> list[dict[str, str]]:
    """A chat with the project: every file in the fixed order in the system message, then the question."""
    files = "\n\n".join(f"File {rel}:\n```\n{editor.text(rel)}\n```" for rel in editor.order)
    return [
        {"role": "system", "content": f"You answer questions about this project.\n\n{files}"},
        {"role": "user", "content": f"(I am in {step.path}, line {step.line + 1}.) {step.question}"},
    ]


def typed_line(path: str, line: int, text: str) -> list[Step]:
    """Type `text` as a new line at `line` and ask for a completion at its end."""
    return [Edit(path, line, line, text + "\n"), Complete(path, line, len(text))]


def fit_files(sources: dict[str, str], count_tokens: Callable[[str], int], budget: int) -> dict[str, str]:
    """Whole lines of each source, an equal share of `budget` tokens per file."""
    share = budget // len(sources)
    out = {}
    for rel, text in sources.items():
        lines = text.split("\n")
        lo, hi = 1, len(lines)
        while lo < hi:  # the most leading lines that fit the share
            mid = (lo + hi + 1) // 2
            if count_tokens("\n".join(lines[:mid])) <= share:
                lo = mid
            else:
                hi = mid - 1
        out[rel] = "\n".join(lines[:lo]) + "\n"
    return out


STDLIB = Path(json.__file__).parent.parent
STDLIB_SOURCES = (
    "json/decoder.py", "json/encoder.py", "textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py",
    "heapq.py", "calendar.py", "csv.py", "string.py", "difflib.py", "argparse.py",
)  # fmt: skip
"""Files of Python's standard library the benchmarks fill contexts with: real code, on every machine."""


def mid_edit(count_tokens: Callable[[str], int], tokens: int) -> Workload:
    """Real source files (Python's standard library) filling ~`tokens`; a completion in the last
    file warms every side, then a line typed in the middle of the middle file, completed at once,
    then a line typed near the end of the last file, completed at once."""
    files = fit_files({f"lib/{n}": (STDLIB / n).read_text() for n in STDLIB_SOURCES[:9]}, count_tokens, tokens)
    order = list(files)
    middle, last = order[len(order) // 2], order[-1]
    mid_line = _body_line(files[middle], 0.5)
    end_line = _body_line(files[last], 0.9)
    steps: list[Step] = [Complete(last, _body_line(files[last], 0.5), 0)]
    steps += typed_line(middle, mid_line, _indent_of(files[middle], mid_line) + "retries = max(retries - 1, 0)")
    steps += typed_line(last, end_line, _indent_of(files[last], end_line) + "retries = max(retries - 1, 0)")
    return Workload(
        "mid-edit",
        files,
        steps,
        f"{len(files)} files of Python's standard library; a line typed in {middle} (the middle "
        f"of the context), then one near the end of {last}",
        ["cold", "mid edit", "end edit"],
    )


def _body_line(text: str, fraction: float) -> int:
    """An indented, non-blank line near `fraction` of the file, where a new statement fits."""
    lines = text.split("\n")
    start = int(len(lines) * fraction)
    for i in list(range(start, len(lines))) + list(range(start, 0, -1)):
        if (
            lines[i].startswith("    ")
            and lines[i].strip()
            and not lines[i].strip().startswith(("#", '"', "'", ")", "]", "}"))
        ):
            return i
    return start


def _indent_of(text: str, line: int) -> str:
    current = text.split("\n")[line]
    return current[: len(current) - len(current.lstrip())]
