"""The chunks picked for a chat request: within the budget, cited by labels that point to real lines."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from coderag_daemon.index import RetrievalOptions, WorkspaceIndex, retrieve
from coderag_daemon.index.chunking import split_lines
from coderag_daemon.index.retrieval import HEADER, format_chunk, select
from coderag_daemon.index.search import Hit
from coderag_daemon.workspace.admission import AdmissionPolicy

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample_project"
LABEL = re.compile(r"^(\S+):(\d+)-(\d+) \(", re.MULTILINE)


def count_tokens(text: str) -> int:
    """About as many as a code tokenizer gives: one per four characters."""
    return (len(text) + 3) // 4


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ws") / "tasktrack"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "QUESTIONS.json"))
    with WorkspaceIndex(AdmissionPolicy([root])) as index:
        index.build().result(timeout=60)
        yield root.resolve(), index


def test_labels_in_the_text_point_to_the_lines_shown(index) -> None:
    root, idx = index
    got = retrieve(idx, "How are reminder times computed for recurring tasks?", count_tokens)
    assert got.text.startswith(HEADER) and got.sources
    assert got.sources[0].display == "tasktrack/scheduler.py"
    labels = LABEL.findall(got.text)
    assert [f"{p}:{a}-{b}" for p, a, b in labels] == [hit.label for hit in got.sources]
    for path, first, last in labels:
        lines = split_lines((root / path).read_text())
        shown = "".join(lines[int(first) - 1 : int(last)])
        assert shown in got.text
    for hit, source in zip(got.sources, got.sources_json(), strict=True):
        assert source["uri"] == (root / hit.display).as_uri() and source["label"] == hit.label
        assert source["range"]["start"] == {"line": hit.start_line, "character": 0}


def test_the_budget_holds_and_a_long_best_chunk_is_cut_to_its_first_lines(index) -> None:
    _, idx = index
    for budget in (60, 200, 400, 1500):
        got = retrieve(
            idx, "verify token expiry signature", count_tokens, options=RetrievalOptions(token_budget=budget)
        )
        assert got.tokens == count_tokens(got.text) <= budget
    small = retrieve(idx, "verify token expiry signature", count_tokens, options=RetrievalOptions(token_budget=120))
    assert len(small.sources) == 1
    whole = retrieve(idx, "verify token expiry signature", count_tokens, options=RetrievalOptions(token_budget=4000))
    assert small.sources[0].start_line == whole.sources[0].start_line
    assert small.sources[0].end_line < whole.sources[0].end_line


def test_files_in_the_context_are_not_retrieved(index) -> None:
    root, idx = index
    got = retrieve(idx, "verify token expiry", count_tokens, exclude_paths=[root / "tasktrack" / "auth.py"])
    assert "tasktrack/auth.py" not in [hit.display for hit in got.sources]


def test_nothing_relevant_gives_an_empty_block(index) -> None:
    _, idx = index
    got = retrieve(idx, "the of and", count_tokens)
    assert (got.text, got.sources, got.tokens) == ("", (), 0)


def test_weak_matches_are_left_out() -> None:
    hits = [Hit(Path(f"/r/{n}.py"), f"{n}.py", 0, 2, n, "a\nb\n", score) for n, score in (("a", 10.0), ("b", 1.0))]
    assert [h.display for h in select(hits, count_tokens).sources] == ["a.py"]


def test_a_chunk_with_backtick_fences_keeps_its_own_fence() -> None:
    hit = Hit(Path("/r/README.md"), "README.md", 0, 3, "README", "```python\nx = 1\n```\n", 1.0)
    piece = format_chunk(hit)
    assert "\n````\n```python\nx = 1\n```\n````\n" in piece
