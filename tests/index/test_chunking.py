"""Chunks follow code structure and are exact line ranges."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from coderag_daemon.index.chunking import ChunkOptions, chunk_text, split_lines

PYTHON = '''"""Module doc."""

import os

LIMIT = 3


def first(a):
    """A docstring that mentions
def not_a_boundary():
    inside the string."""
    return a + 1


class Store:
    def get(self, key):
        return key

    def put(self, key, value):
        pass


async def later():
    return 2
'''


def lines_of(text: str, chunk) -> str:
    return "".join(split_lines(text)[chunk.start_line : chunk.end_line])


def test_python_is_cut_at_top_level_definitions() -> None:
    chunks = chunk_text("m.py", PYTHON, ChunkOptions(min_lines=1))
    titles = [c.title for c in chunks]
    assert "def first" in titles and "class Store" in titles and "def later" in titles
    assert not any("not_a_boundary" in t for t in titles)  # inside a triple-quoted string
    first = next(c for c in chunks if c.title == "def first")
    assert first.text.startswith("def first(a):") and "return a + 1" in first.text


def covered_in_order(text: str, chunks) -> None:
    """Chunks are exact lines, in order, not overlapping, and every non-blank line is in one."""
    lines = split_lines(text)
    assert all(c.text == lines_of(text, c) and c.start_line < c.end_line for c in chunks)
    assert all(a.end_line <= b.start_line for a, b in zip(chunks, chunks[1:], strict=False))
    covered = {i for c in chunks for i in range(c.start_line, c.end_line)}
    assert all(i in covered for i, line in enumerate(lines) if line.strip())


def test_chunks_cover_the_file_exactly_in_order() -> None:
    covered_in_order(PYTHON, chunk_text("m.py", PYTHON))


def test_a_long_class_is_cut_at_its_methods_and_long_text_in_windows() -> None:
    methods = "".join(f"    def m{i}(self):\n" + "        x = 1\n" * 6 + "\n" for i in range(20))
    source = "class Big:\n" + methods
    chunks = chunk_text("big.py", source, ChunkOptions(max_lines=40))
    assert len(chunks) > 3 and all(c.end_line - c.start_line <= 40 for c in chunks)
    assert any(c.title.startswith("def m") or "Big" in c.title for c in chunks[1:])
    prose = "".join(f"word{i}\n" for i in range(500))
    windows = chunk_text("notes.txt", prose, ChunkOptions(max_lines=80, window_lines=50))
    assert all(c.end_line - c.start_line <= 80 for c in windows) and len(windows) >= 500 // 80


def test_crlf_and_lone_cr_are_line_breaks_as_in_lsp() -> None:
    text = "def a():\r\n    return 1\r\n\r\ndef b():\r    return 2\r"
    chunks = chunk_text("m.py", text, ChunkOptions(min_lines=1))
    assert [c.start_line for c in chunks] == [0, 3]
    assert chunks[1].text == "def b():\r    return 2\r"


PIECES = [*"ab :\t#()'\"\n\r", "def ", "class ", '"""', "    "]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=150).map("".join))
def test_any_text_is_covered_by_exact_lines(text: str) -> None:
    chunks = chunk_text("x.py", text, ChunkOptions(max_lines=6, window_lines=4, min_lines=2))
    covered_in_order(text, chunks)
    assert all(c.end_line - c.start_line <= 6 for c in chunks)
