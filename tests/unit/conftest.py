"""Helpers shared by the unit tests that work on a real directory tree."""

from __future__ import annotations

from pathlib import Path

import pytest


def write(path: Path, content: str | bytes = "x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A workspace root, resolved (tmp paths may sit behind a symlink)."""
    (tmp_path / "ws").mkdir()
    return (tmp_path / "ws").resolve()
