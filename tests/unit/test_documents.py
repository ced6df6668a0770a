"""DocumentStore: LSP incremental edits (UTF-16, CRLF), disk-backed documents, URIs."""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

import pytest
from lsprotocol import types as lsp

from coderag_daemon.workspace import files as workspace_files
from coderag_daemon.workspace.documents import (
    Document,
    DocumentError,
    DocumentStore,
    TextChange,
    path_to_uri,
    uri_to_path,
)

URI = "file:///tmp/project/a.py"


# --- an independent reference: lines kept with their breaks, UTF-16 via the codec ---


def ref_lines(text: str) -> list[tuple[str, str]]:
    """(content, line break) pairs, splitting on \\r\\n, \\r and \\n only."""
    lines, content, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch in "\r\n":
            brk = "\r\n" if text.startswith("\r\n", i) else ch
            lines.append(("".join(content), brk))
            content = []
            i += len(brk)
        else:
            content.append(ch)
            i += 1
    lines.append(("".join(content), ""))
    return lines


def utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def ref_offset(text: str, line: int, character: int) -> int:
    lines = ref_lines(text)
    if line >= len(lines):
        return len(text)
    before = sum(len(c) + len(b) for c, b in lines[:line])
    content = lines[line][0]
    units = content.encode("utf-16-le")[: 2 * character]
    return before + len(units.decode("utf-16-le"))


def ref_position(text: str, offset: int) -> tuple[int, int]:
    start = 0
    for line, (content, brk) in enumerate(ref_lines(text)):
        if offset <= start + len(content) + len(brk) - (1 if brk else 0) or not brk:
            return line, utf16(content[: max(0, min(offset - start, len(content)))])
        start += len(content) + len(brk)
    raise AssertionError("unreachable")


def random_position(rng: random.Random, text: str) -> tuple[int, int]:
    """A valid position (never inside a surrogate pair), sometimes past a line end or the last line."""
    lines = ref_lines(text)
    line = rng.randrange(len(lines) + 1)
    content = lines[line][0] if line < len(lines) else ""
    k = rng.randrange(len(content) + 3)
    return line, utf16(content[:k]) + max(0, k - len(content))


ALPHABET = ["a", "b", " ", "é", "中", "😀", "𝄞", "\r", "\n", "\r\n", "\u2028"]


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def lsp_change(start, end, text) -> TextChange:
    return TextChange(text, (start, end))


# --- random edits against the reference ---


@pytest.mark.parametrize("seed", range(8))
def test_random_incremental_edits_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    store = DocumentStore()
    expected = random_text(rng, 40)
    store.open(URI, expected, 1)
    for version in range(2, 250):
        batch = []
        for _ in range(rng.randrange(1, 4)):
            if rng.random() < 0.03:
                change = TextChange(random_text(rng, rng.randrange(30)))
                expected = change.text
            else:
                start, end = sorted([random_position(rng, expected), random_position(rng, expected)])
                change = lsp_change(start, end, random_text(rng, rng.randrange(4)))
                s, e = ref_offset(expected, *start), ref_offset(expected, *end)
                expected = expected[:s] + change.text + expected[e:]
            batch.append(change)
        doc = store.change(URI, version, batch)
        assert doc.text == expected
        for _ in range(3):  # the patched line index must agree with the reference
            pos = random_position(rng, expected)
            assert doc.offset_at(pos) == ref_offset(expected, *pos)
            off = rng.randrange(len(expected) + 1)
            assert doc.position_at(off) == ref_position(expected, off)


def test_edit_joining_and_splitting_crlf() -> None:
    store = DocumentStore()
    store.open(URI, "a\rb\nc", 1)
    doc = store.change(URI, 2, [lsp_change((1, 0), (1, 1), "")])  # "a\r\nc": \r and \n merge
    assert doc.text == "a\r\nc"
    assert doc.offset_at((1, 0)) == 3
    assert doc.offset_at((0, 5)) == 1  # clamped before the break
    doc = store.change(URI, 3, [lsp_change((0, 1), (1, 0), "\rX\n")])
    assert doc.text == "a\rX\nc"
    assert doc.position_at(len(doc.text)) == (2, 1)


# --- positions ---


def offset_at(text: str, position: tuple[int, int]) -> int:
    return Document("untitled:t", None, text, 1, "editor", "").offset_at(position)


def position_at(text: str, offset: int) -> tuple[int, int]:
    return Document("untitled:t", None, text, 1, "editor", "").position_at(offset)


def test_emoji_counts_two_utf16_units() -> None:
    text = "a😀b\n😀😀x"
    assert offset_at(text, (0, 3)) == 2  # after the emoji
    assert offset_at(text, (0, 4)) == 3
    assert offset_at(text, (1, 4)) == 6
    assert position_at(text, 2) == (0, 3)
    assert position_at(text, 7) == (1, 5)


def test_crlf_and_lone_cr_break_lines() -> None:
    text = "ab\r\ncd\ref\ngh"
    assert offset_at(text, (1, 0)) == 4
    assert offset_at(text, (2, 1)) == 8
    assert offset_at(text, (3, 2)) == 12
    assert position_at(text, 4) == (1, 0)
    assert position_at(text, 3) == (0, 2)  # between \r and \n: end of the line's content


def test_unicode_line_separators_are_not_lsp_line_breaks() -> None:
    text = "a\u2028b\x0cc\x85d\ne"
    assert offset_at(text, (1, 0)) == len(text) - 1
    assert position_at(text, 6) == (0, 6)


def test_out_of_range_positions_clamp() -> None:
    text = "abc\r\nde"
    assert offset_at(text, (0, 99)) == 3  # to the line end, not into the break
    assert offset_at(text, (1, 99)) == 7
    assert offset_at(text, (5, 0)) == 7  # past the last line: end of the document
    assert position_at(text, 99) == (1, 2)
    assert offset_at("", (0, 3)) == 0


@pytest.mark.parametrize("position", [(-1, 0), (0, -1)])
def test_negative_positions_are_errors(position) -> None:
    with pytest.raises(DocumentError, match="negative"):
        offset_at("abc", position)


def test_position_inside_surrogate_pair_is_an_error() -> None:
    with pytest.raises(DocumentError, match="surrogate"):
        offset_at("x😀y", (0, 2))
    with pytest.raises(DocumentError, match="negative"):
        position_at("x", -1)


# --- store: errors leave documents unchanged ---


def test_failed_batch_is_atomic() -> None:
    store = DocumentStore()
    before = store.open(URI, "hello 😀\nworld", 1)
    bad_batches = [
        [lsp_change((0, 0), (0, 1), "H"), lsp_change((0, 7), (0, 7), "!")],  # inside the emoji
        [lsp_change((0, 0), (0, 1), "H"), lsp_change((1, 3), (1, 1), "")],  # start after end
        [lsp_change((0, 0), (0, 1), "H"), lsp_change((0, -1), (0, 0), "")],  # negative
    ]
    for batch in bad_batches:
        with pytest.raises(DocumentError):
            store.change(URI, 2, batch)
        assert store.get(URI) is before


def test_version_regression_is_rejected_equal_is_accepted() -> None:
    store = DocumentStore()
    store.open(URI, "x", 5)
    with pytest.raises(DocumentError, match="older"):
        store.change(URI, 4, [TextChange("y")])
    assert store.get(URI).text == "x"
    assert store.change(URI, 5, [TextChange("y")]).text == "y"


def test_unknown_and_not_open_documents_are_errors(tmp_path: Path) -> None:
    store = DocumentStore()
    for op in (
        lambda: store.change(URI, 1, [TextChange("x")]),
        lambda: store.save(URI),
        lambda: store.close(URI),
    ):
        with pytest.raises(DocumentError, match="unknown"):
            op()
    (tmp_path / "d.py").write_text("x")
    doc = store.load_from_disk(tmp_path / "d.py")
    with pytest.raises(DocumentError, match="not open"):
        store.change(doc.uri, 1, [TextChange("y")])
    assert isinstance(DocumentError("x"), ValueError)


# --- store: lifecycle ---


def test_open_change_save_close() -> None:
    store = DocumentStore()
    opened = store.open(URI, "a", 1, "python")
    assert (opened.source, opened.language_id, opened.path) == ("editor", "python", Path("/tmp/project/a.py"))
    changed = store.change(URI, 2, [lsp_change((0, 1), (0, 1), "b")])
    assert changed.text == "ab" and changed.version == 2
    assert opened.text == "a"  # snapshots are immutable
    unchanged = store.change(URI, 3, [])
    assert (unchanged.text, unchanged.version) == ("ab", 3)
    assert store.save(URI) is unchanged
    saved = store.save(URI, "abc")
    assert saved.text == "abc"
    assert store.close(URI) == saved
    assert store.get(URI) is None and len(store) == 0


def test_text_change_from_lsprotocol() -> None:
    partial = lsp.TextDocumentContentChangePartial(
        range=lsp.Range(start=lsp.Position(line=1, character=2), end=lsp.Position(line=3, character=4)), text="x"
    )
    assert TextChange.from_lsp(partial) == TextChange("x", ((1, 2), (3, 4)))
    assert TextChange.from_lsp(lsp.TextDocumentContentChangeWholeDocument(text="y")) == TextChange("y")


def test_document_can_be_built_directly() -> None:
    doc = Document("untitled:1", None, "a\nb", 1, "editor", "")
    assert doc.offset_at((1, 1)) == 3


# --- URIs ---


def test_uris_with_spaces_and_percent_encoding(tmp_path: Path) -> None:
    path = tmp_path / "my dir" / "naïve #1%.py"
    uri = path_to_uri(path)
    assert " " not in uri and "%20" in uri and "%23" in uri and "%25" in uri
    assert uri_to_path(uri) == path
    assert uri_to_path("file://localhost/tmp/a%20b.py") == Path("/tmp/a b.py")
    assert uri_to_path("untitled:Untitled-1") is None

    store = DocumentStore()
    store.open("file:///tmp/x%20y/na%C3%AFve.py", "t", 1)
    assert store.get("file:///tmp/x y/naïve.py") is not None  # same file, other encoding
    assert store.get(path_to_uri("/tmp/x y/naïve.py")).uri == "file:///tmp/x%20y/na%C3%AFve.py"
    untitled = store.open("untitled:Untitled-1", "u", 1)
    assert untitled.path is None and store.get("untitled:Untitled-1") is untitled


# --- disk-backed documents ---


def test_load_from_disk(tmp_path: Path) -> None:
    store = DocumentStore()
    (tmp_path / "ok.py").write_bytes(b"\xef\xbb\xbfprint('h\xc3\xa9')\r\n")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    doc = store.load_from_disk(tmp_path / "ok.py", "python")
    assert doc.text == "print('hé')\r\n" and doc.source == "disk" and doc.version is None
    assert doc.uri == path_to_uri(tmp_path / "ok.py")
    assert store.load_from_disk(tmp_path / "ok.py") is doc  # unchanged: same snapshot
    assert store.load_from_disk(tmp_path / "latin1.txt") is None
    assert store.load_from_disk(tmp_path / "missing.py") is None
    assert store.load_from_disk(tmp_path) is None
    assert [d.path for d in store] == [tmp_path / "ok.py"]


def test_editor_buffer_is_authoritative_until_closed(tmp_path: Path) -> None:
    file = tmp_path / "a.py"
    file.write_text("disk\n")
    store = DocumentStore()
    disk = store.load_from_disk(file)
    other = store.load_from_disk(_write(tmp_path / "b.py", "b"))
    opened = store.open(path_to_uri(file), "disk\n", 1)
    assert (opened.source, opened.text) == ("editor", disk.text)
    assert [d.path for d in store] == [file, other.path]  # replaced in place
    edited = store.change(opened.uri, 2, [TextChange("buffer\n")])
    file.write_text("changed on disk\n")
    assert store.load_from_disk(file) is edited
    assert store.remove(file) == []
    store.close(opened.uri)
    assert store.load_from_disk(file).text == "changed on disk\n"


def test_reload_from_disk(tmp_path: Path) -> None:
    file = _write(tmp_path / "a.py", "one")
    store = DocumentStore()
    first = store.load_from_disk(file)
    file.write_text("two")
    second = store.load_from_disk(file)
    assert second.text == "two"
    file.write_bytes(b"\xff\xfe")
    assert store.load_from_disk(file) is None
    assert store.get(first.uri) is None  # a stale copy is not kept


def test_a_file_is_never_read_past_max_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size was checked before; a file that grew since is refused without being read whole."""
    file = _write(tmp_path / "a.py", "0123456789")
    store = DocumentStore()
    assert store.load_from_disk(file, max_bytes=10).text == "0123456789"
    file.write_text("0123456789" * 1000)
    read = []

    class Spy(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            read.append(len(data))
            return data

    monkeypatch.setattr(workspace_files, "open", lambda path, mode: Spy(Path(path).read_bytes()), raising=False)
    assert store.load_from_disk(file, max_bytes=10) is None
    assert read == [11] and list(store) == []


def test_remove_file_and_directory(tmp_path: Path) -> None:
    store = DocumentStore()
    files = [_write(tmp_path / name, name) for name in ("a.py", "pkg/b.py", "pkg/sub/c.py", "pkg2/d.py")]
    for f in files:
        store.load_from_disk(f)
    assert [d.path for d in store.remove(files[0])] == [files[0]]
    assert sorted(d.path for d in store.remove(tmp_path / "pkg")) == [files[1], files[2]]
    assert [d.path for d in store] == [files[3]]  # "pkg2" is not under "pkg"
    assert store.remove(tmp_path / "nothing") == []


def test_rename_file_and_directory(tmp_path: Path) -> None:
    store = DocumentStore()
    a = store.load_from_disk(_write(tmp_path / "a.py", "A"))
    b = store.load_from_disk(_write(tmp_path / "pkg/b.py", "B"))
    (moved_a,) = store.rename(tmp_path / "a.py", tmp_path / "z.py")
    assert (moved_a.text, moved_a.path, moved_a.uri) == ("A", tmp_path / "z.py", path_to_uri(tmp_path / "z.py"))
    assert store.get(a.uri) is None
    (moved_b,) = store.rename(tmp_path / "pkg", tmp_path / "lib")
    assert moved_b.path == tmp_path / "lib" / "b.py" and moved_b.text == b.text
    assert store.rename(tmp_path / "untracked.py", tmp_path / "z.py") == []
    assert store.get(moved_a.uri) is moved_a  # a move from an unknown file leaves the target alone


def test_rename_onto_open_buffer_keeps_the_buffer(tmp_path: Path) -> None:
    store = DocumentStore()
    store.load_from_disk(_write(tmp_path / "tmp123", "new"))
    buffer = store.open(path_to_uri(tmp_path / "a.py"), "buffer", 1)
    assert store.rename(tmp_path / "tmp123", tmp_path / "a.py") == []
    assert list(store) == [buffer]


# --- speed (measured, not asserted) ---


def test_single_char_edits_on_a_large_document(record_property) -> None:
    store = DocumentStore()
    lines = 5000
    store.open(URI, "".join(f"    value_{i} = compute({i}, 'text')  # é\n" for i in range(lines)), 1)
    rng = random.Random(0)
    n = 500
    started = time.perf_counter()
    for version in range(2, n + 2):
        line = rng.randrange(lines)
        doc = store.change(URI, version, [lsp_change((line, 4), (line, 4), "x")])
    per_edit_us = (time.perf_counter() - started) / n * 1e6
    record_property("single_char_edit_us", round(per_edit_us, 1))
    assert doc.text.count("x") >= n


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
