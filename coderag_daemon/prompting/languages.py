"""What the prompts and the stop rule need to know of a file's language, by its name's suffix."""

from __future__ import annotations

from pathlib import PurePosixPath

# Line-comment syntax; C-style is the common default.
_COMMENT = {
    ".py": "#",
    ".pyi": "#",
    ".sh": "#",
    ".bash": "#",
    ".rb": "#",
    ".pl": "#",
    ".r": "#",
    ".jl": "#",
    ".toml": "#",
    ".yaml": "#",
    ".yml": "#",
    ".cfg": "#",
    ".ini": "#",
    ".mk": "#",
    ".cmake": "#",
    ".nim": "#",
    ".ex": "#",
    ".exs": "#",
    ".lua": "--",
    ".sql": "--",
    ".hs": "--",
    ".elm": "--",
    ".lisp": ";",
    ".clj": ";",
    ".el": ";",
    ".scm": ";",
    ".tex": "%",
    ".erl": "%",
    ".m": "%",
}


def line_comment(path: str) -> str:
    """The line-comment marker of the file at `path` (a path or a URI)."""
    return _COMMENT.get(PurePosixPath(path).suffix.lower(), "//")
