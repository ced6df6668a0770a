"""A replayed editing session: the change between two released versions of a real package, typed.

The package's history is taken from PyPI, which keeps every release: both versions' wheels are
downloaded, the changed files' hunks are computed with difflib, and the newer text is typed over
the older one, hunk by hunk, a line at a time, with an inline completion asked at the end of each
typed line and a question about the project at a few points. The editor holds the changed files and
a few unchanged files of the same package, opened in alphabetical order.
"""

from __future__ import annotations

import difflib
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .pypi import pip_download
from .workload import Chat, Edit, Step, Workload, fit_files, typed_line

QUESTIONS = [
    "What does the function I am editing return when nothing is found?",
    "Which other files in this project call into the file I am editing?",
    "Summarize what this change does, in two sentences.",
]


@dataclass(frozen=True)
class ReplaySource:
    package: str = "platformdirs"
    old: str = "4.2.1"
    new: str = "4.2.2"
    context_files: tuple[str, ...] = ("platformdirs/api.py", "platformdirs/macos.py", "platformdirs/unix.py")
    """Unchanged files opened alongside the changed ones."""

    def describe(self) -> str:
        return f"{self.package} {self.old} → {self.new} (PyPI wheels)"


def wheel_sources(package: str, version: str, cache: Path) -> dict[str, str]:
    """Python sources of a pure-Python wheel, downloaded once into `cache`."""
    folder = cache / f"{package}-{version}"
    if not any(folder.glob("*.whl")):
        pip_download(f"{package}=={version}", folder, "--only-binary", ":all:")
    with zipfile.ZipFile(next(folder.glob("*.whl"))) as whl:
        return {n: whl.read(n).decode() for n in whl.namelist() if n.endswith(".py")}


def replay_session(
    source: ReplaySource,
    count_tokens: Callable[[str], int],
    context_tokens: int,
    max_lines: int,
    chats: int,
    cache: Path | None = None,
) -> Workload:
    """The steps that type `source.old` into `source.new`, at most `max_lines` typed lines.

    Unchanged files are cut to fit `context_tokens` (changed files are kept whole: they are typed in);
    `chats` questions are spread evenly over the session.
    """
    cache = cache or Path(tempfile.gettempdir()) / "coderag-bench-replay"
    old = wheel_sources(source.package, source.old, cache)
    new = wheel_sources(source.package, source.new, cache)
    changed = sorted(rel for rel in old.keys() & new.keys() if old[rel] != new[rel])
    budget = context_tokens - sum(count_tokens(old[rel]) for rel in changed)
    extra = fit_files({rel: old[rel] for rel in source.context_files}, count_tokens, max(budget, 256))
    files = dict(sorted({**extra, **{rel: old[rel] for rel in changed}}.items()))

    steps: list[Step] = []
    labels: list[str] = []
    typed = 0
    touched: dict[str, None] = {}  # the files typed in, in order
    for rel in changed:
        a, b = old[rel].split("\n"), new[rel].split("\n")
        shift = 0  # lines typed so far minus lines deleted, above the current hunk
        opcodes = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
        for hunk, (_, i1, i2, j1, j2) in enumerate(opcodes, 1):
            if typed == max_lines:
                break
            at = i1 + shift
            if i2 > i1:
                steps.append(Edit(rel, at, at + i2 - i1, ""))
            for k, text in enumerate(b[j1:j2]):
                if typed == max_lines:
                    break
                steps += typed_line(rel, at + k, text)
                labels.append(f"{Path(rel).name} hunk {hunk} line {k + 1}")
                typed += 1
                touched.setdefault(rel)
            shift += (j2 - j1) - (i2 - i1)
    _insert_chats(steps, labels, chats)
    return Workload(
        "replay",
        files,
        steps,
        f"{source.describe()}: {typed} lines typed in {len(touched)} of the {len(changed)} changed files "
        f"({', '.join(touched)}), {chats} questions; {len(files)} files open",
        labels,
    )


def _insert_chats(steps: list[Step], labels: list[str], chats: int) -> None:
    """A question after every len/(chats+1)-th completion, about the file just edited."""
    completes = [i for i, s in enumerate(steps) if not isinstance(s, Edit)]
    for n in range(chats, 0, -1):
        k = len(completes) * n // (chats + 1)
        at = completes[k] + 1
        where = steps[completes[k]]
        steps.insert(at, Chat(where.path, where.line, QUESTIONS[(n - 1) % len(QUESTIONS)]))
        labels.insert(k + 1, f"chat {n}")
