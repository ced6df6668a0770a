"""Definitions of the names used above the cursor in a completion's request tail: which names, what
of each definition, the token budget, where they sit in the tail, and the setting that turns them on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from coderag_daemon.engine import ContextCache, EngineOptions, Model, UpdateStats
from coderag_daemon.index import IndexOptions, WorkspaceIndex
from coderag_daemon.options import Options
from coderag_daemon.prompting.completion import Window, cursor_window
from coderag_daemon.prompting.definitions import Definition, definitions, names_used, summarize
from coderag_daemon.prompting.prompts import DEFINITIONS_PATH, detect_layout
from coderag_daemon.worker import jobs
from coderag_daemon.workspace.admission import AdmissionPolicy
from coderag_daemon.workspace.documents import path_to_uri
from coderag_daemon.workspace.project import Project
from fixtures.tiny_models import tiny_model_path
from tests.sessions import CacheSession

from .conftest import write

STORE = '''"""Storage."""


class Store:
    """Keeps records by key."""

    kind = "memory"

    def __init__(self, root: Path, *, limit: int = 10) -> None:
        self.root = root

    def load(self, key: str) -> bytes:
        return b""


def save_record(
    store: Store,
    key: str,
    data: bytes,
) -> int:
    """Write `data` under `key`; the bytes written.

    More words.
    """
    return len(data)


async def fetch(url):
    return url
'''


@dataclass(frozen=True)
class Chunk:
    path: Path
    display: str
    start_line: int
    text: str


def chunk(text: str = STORE, start: int = 0) -> Chunk:
    return Chunk(Path("/ws/store.py"), "store.py", start, text)


def test_names_used_above_the_cursor_nearest_first() -> None:
    prefix = (
        "from .store import Store, save_record as save\n"
        "def helper(x):\n"
        "    return len(x)\n"
        "value = Store(root)\n"
        "n = save_record(value, key, data)\n"
        "if isinstance(n, int):\n"
        "    result = fetch_all("
    )
    names = names_used(Window(prefix, ""))
    # the cursor's line (fetch_all) is left out: typing on it keeps the tail's start the same;
    # builtins, keywords, names of two letters and names defined in the window too
    assert names == ["save_record", "Store", "save"]


def test_summarize_a_function_keeps_its_signature_and_first_doc_line() -> None:
    d = summarize("save_record", chunk(start=100))
    assert d is not None
    assert d.text == (
        "def save_record(\n    store: Store,\n    key: str,\n    data: bytes,\n) -> int:\n"
        '    """Write `data` under `key`; the bytes written."""'
    )
    assert (d.where, d.line) == ("store.py:116", 115)
    assert "return len" not in d.text


def test_summarize_a_class_adds_its_constructor() -> None:
    d = summarize("Store", chunk())
    assert d is not None
    assert d.text == (
        'class Store:\n    """Keeps records by key."""\n    def __init__(self, root: Path, *, limit: int = 10) -> None:'
    )
    method = summarize("load", chunk())
    assert method is not None and method.text == "def load(self, key: str) -> bytes:"
    fetch = summarize("fetch", chunk())
    assert fetch is not None and fetch.text == "async def fetch(url):"
    assert summarize("kind", chunk()) is None and summarize("Sto", chunk()) is None


def test_definitions_fit_the_budget_in_the_names_order() -> None:
    def find(name: str) -> list[Chunk]:
        return [chunk()]

    count = len  # a character is a token
    both = definitions(["Store", "save_record"], find, count, 10_000)
    assert both.startswith("# store.py:4\nclass Store:") and "\n\n# store.py:16\ndef save_record(" in both
    only_first = definitions(["Store", "save_record"], find, count, len(both) - 5)
    assert only_first.startswith("# store.py:4\n") and "save_record" not in only_first
    # one that does not fit leaves room for a smaller one after it
    assert (
        definitions(["save_record", "load"], find, count, 60) == "# store.py:12\ndef load(self, key: str) -> bytes:\n"
    )
    assert definitions(["missing"], find, count, 10_000) == ""

    def seen(d: Definition) -> bool:
        return d.name == "Store"

    assert "class Store" not in definitions(["Store", "load"], find, count, 10_000, skip=seen)


def test_with_the_workspace_index(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root / "store.py", STORE)
    write(root / "other.py", "def unrelated():\n    return Store\n")
    index = WorkspaceIndex(AdmissionPolicy([root]), None, IndexOptions(min_update_interval=0.0))
    try:
        index.build().result(timeout=60)
        window = Window("x = save_record(store, 'k', b'')\ny = Store(root)\nz = ", "")
        text = definitions(names_used(window), lambda n: index.search(n, k=8), len, 10_000)
    finally:
        index.close(save=False)
    assert text.startswith("# store.py:4\nclass Store:\n") and "# store.py:16\ndef save_record(\n" in text


# --- in the request tail ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> Model:
    return Model(tiny_model_path("dense"))


def test_the_tail_shows_them_as_a_stub_file_before_the_request(tiny: Model) -> None:
    layout = detect_layout(tiny)
    plain = layout.completion_tail("a.py", "x = ", "\n")
    assert layout.completion_tail("a.py", "x = ", "\n", "") == plain
    with_defs = layout.completion_tail("a.py", "x = ", "\n", "def f(a): ...")
    stub = layout.file_segment(DEFINITIONS_PATH, "def f(a): ...")
    assert with_defs == stub + plain


class Recording(CacheSession):
    def __init__(self, cache: ContextCache) -> None:
        super().__init__(cache)
        self.targets: list[list[list[int]]] = []

    def update(self, segments: list[list[int]], seq: int = 0) -> UpdateStats:
        self.targets.append(segments)
        return super().update(segments, seq)


@pytest.mark.parametrize(("setting", "n_ctx", "asked"), [(0, 2048, None), (64, 2048, 64), (4096, 2048, "room")])
def test_complete_puts_them_after_the_file_context(
    tmp_path: Path, tiny: Model, setting: int, n_ctx: int, asked
) -> None:  # noqa: ANN001
    path = write(tmp_path / "ws" / "app.py", "")
    write(tmp_path / "ws" / "lib.py", "def helper(a, b):\n    return a\n")
    options = Options(
        n_ctx=n_ctx, max_completion_tokens=2, completion_wait_tokens=1 << 17, completion_definition_tokens=setting
    )
    project = Project(options)
    project.set_roots([path.parent])
    layout = detect_layout(tiny, options.prompt_options())
    project.set_layout(layout)
    project.opened(path_to_uri(tmp_path / "ws" / "lib.py"), "def helper(a, b):\n    return a\n", 1, "python")
    text = "import lib\n\nvalue = lib.helper(1, 2)\nother = "
    doc = project.opened(path_to_uri(path), text, 1, "python")
    session = Recording(ContextCache(tiny, EngineOptions(n_ctx=n_ctx, n_batch=256, n_threads=1)))
    budgets: list[int] = []

    def found(count_tokens, budget: int) -> str:  # noqa: ANN001
        budgets.append(budget)
        assert count_tokens("def f") == len(tiny.tokenize("def f"))
        return "def helper(a, b): ..."

    window = cursor_window(text, len(text))
    jobs.complete(session, project, doc, window, options, found)
    files, tail = session.targets[-1][:-1], session.targets[-1][-1]
    assert files == project.segments(exclude=doc)  # the cached file context stays as it is
    healed = layout.healed_text(window.prefix)
    prefix = window.prefix[: len(window.prefix) - len(healed)]
    if asked is None:
        assert budgets == [] and tail == layout.completion_tail("app.py", prefix, window.suffix)
        return
    assert tail == layout.completion_tail("app.py", prefix, window.suffix, "def helper(a, b): ...")
    if asked == "room":  # what n_ctx leaves after the files, the tail without them and the answer
        plain = layout.completion_tail("app.py", prefix, window.suffix)
        assert budgets == [n_ctx - sum(map(len, files)) - len(plain) - 2 - jobs._STUB_MARKUP]
    else:
        assert budgets == [asked]
