"""The file order: LRU order, token budget with low-water eviction, per-text token caching.

Keys here are the display paths themselves (the order's default `display`), so that segments read as
the model reads them; the workspace keys it by absolute path (tests/unit/test_project.py)."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys

import pytest

from coderag_daemon.engine import Model
from coderag_daemon.prompting.context import ContextLayout, ContextOptions
from coderag_daemon.prompting.prompts import detect_layout
from coderag_daemon.workspace.file_order import FileOrder
from fixtures.tiny_models import tiny_model_path
from tests.unit.test_prompts import CharTokenizer


class CountingModel:
    """A real tiny model's tokenizer that counts tokenize calls."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.special = model.special
        self.chat_template = model.chat_template
        self.calls = 0

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        self.calls += 1
        return self.model.tokenize(text, special=special)

    def token_id(self, text: str) -> int | None:
        return self.model.token_id(text)


@pytest.fixture(scope="module")
def tiny() -> Model:
    return Model(tiny_model_path("dense"))


@pytest.fixture
def counting(tiny: Model) -> CountingModel:
    return CountingModel(tiny)


def laid_out(layout: ContextLayout) -> FileOrder:
    files = FileOrder()
    files.relayout(layout)
    return files


@pytest.fixture
def policy(counting: CountingModel) -> FileOrder:
    return laid_out(ContextLayout.of(detect_layout(counting), "proj"))


def source(name: str, lines: int = 20) -> str:
    return "".join(f"def {name}_{i}(x):\n    return x + {i}\n" for i in range(lines))


def order(policy: FileOrder) -> list[str]:
    return [e.path for e in policy.entries()]


def char_policy(budget: int = 100, max_files: int = 64) -> tuple[FileOrder, CharTokenizer]:
    """A file order over the one-token-per-character fake, where segment sizes are exact."""
    tok = CharTokenizer()
    options = ContextOptions(token_budget=budget, max_files=max_files)
    return laid_out(ContextLayout.of(detect_layout(tok), "p", options)), tok


def sized(path: str, n: int) -> str:
    """Text whose qwen-repo segment is `n` fake tokens: <|file_sep|>, path, newline, body."""
    return "x" * (n - len(path) - 3) + "\n"


# --- order --------------------------------------------------------------------------------------


def test_opened_files_are_appended(policy: FileOrder) -> None:
    for name in "abc":
        policy.add(f"{name}.py", source(name))
    assert order(policy) == ["a.py", "b.py", "c.py"]


def test_an_edit_moves_the_file_to_the_tail_and_a_save_does_not(policy: FileOrder) -> None:
    for name in "abc":
        policy.add(f"{name}.py", source(name))
    policy.touch("a.py", source("a") + "# more\n")
    assert order(policy) == ["b.py", "c.py", "a.py"]
    policy.touch("b.py", source("b"))  # didSave, text unchanged
    assert order(policy) == ["b.py", "c.py", "a.py"]


def test_files_of_a_saved_order_take_their_places_in_it_however_they_are_opened(policy: FileOrder) -> None:
    policy.add("x.py", source("x"))  # opened before the saved order was known
    policy.prefer(["a.py", "b.py", "c.py"])
    assert order(policy) == ["x.py"]
    for name in "cyab":
        policy.add(f"{name}.py", source(name))
    assert order(policy) == ["a.py", "b.py", "c.py", "x.py", "y.py"]
    policy.touch("a.py", source("a") + "# edited\n")  # edits still move a file to the tail
    assert order(policy) == ["b.py", "c.py", "x.py", "y.py", "a.py"]


def test_a_saved_order_arranges_the_files_already_there(policy: FileOrder) -> None:
    for name in "xcab":
        policy.add(f"{name}.py", source(name))
    policy.prefer(["a.py", "b.py", "c.py"])
    assert order(policy) == ["a.py", "b.py", "c.py", "x.py"]


def test_editing_an_unknown_file_adds_it_at_the_tail(policy: FileOrder) -> None:
    policy.add("a.py", source("a"))
    policy.touch("b.py", source("b"))
    assert order(policy) == ["a.py", "b.py"]


def test_reopening_or_refreshing_keeps_the_place(policy: FileOrder, tiny: Model) -> None:
    for name in "abc":
        policy.add(f"{name}.py", source(name))
    policy.add("a.py", source("a"))
    policy.refresh("b.py", "changed on disk\n")
    policy.refresh("zzz.py", "not in the context\n")
    assert order(policy) == ["a.py", "b.py", "c.py"]
    assert list(policy.entries()[1].tokens) == detect_layout(tiny).file_segment("b.py", "changed on disk\n")


def test_remove(policy: FileOrder) -> None:
    for name in "abc":
        policy.add(f"{name}.py", source(name))
    policy.remove("b.py")
    policy.remove("missing.py")
    assert order(policy) == ["a.py", "c.py"] and "b.py" not in policy and len(policy) == 2


def test_rename_keeps_the_place_and_shows_the_new_path(policy: FileOrder, tiny: Model) -> None:
    for name in "abcd":
        policy.add(f"{name}.py", source(name))
    policy.move("b.py", "pkg/b2.py")
    assert order(policy) == ["a.py", "pkg/b2.py", "c.py", "d.py"]
    assert list(policy.entries()[1].tokens) == detect_layout(tiny).file_segment("pkg/b2.py", source("b"))
    policy.move("a.py", "d.py")  # onto a file in the context: the moved file replaces it
    assert order(policy) == ["d.py", "pkg/b2.py", "c.py"]
    assert policy.entries()[0].tokens == tuple(detect_layout(tiny).file_segment("d.py", source("a")))


def test_a_moved_directory_keeps_its_files_places(policy: FileOrder) -> None:
    for name in ("a.py", "pkg/b.py", "pkgx.py", "pkg/c.py"):
        policy.add(name, source("x"))
    assert policy.move("pkg", "lib") == {"pkg/b.py": "lib/b.py", "pkg/c.py": "lib/c.py"}
    assert order(policy) == ["a.py", "lib/b.py", "pkgx.py", "lib/c.py"]  # a sibling sharing the prefix stays


# --- tokens -------------------------------------------------------------------------------------


def test_files_are_tokenized_once_per_text(policy: FileOrder, counting: CountingModel) -> None:
    for name in "abc":
        policy.add(f"{name}.py", source(name, 60))
    policy.segments()  # tokenizes the three files
    counting.calls = 0
    policy.segments()
    policy.segments(exclude="a.py")
    [e.describe(0) for e in policy.entries()]
    policy.touch("b.py", source("b", 60))
    policy.add("c.py", source("c", 60))
    assert counting.calls == 0
    policy.touch("b.py", source("b", 60) + "x = 1\n")
    assert counting.calls == 0  # an edit only records text; the model worker tokenizes on read
    assert order(policy) == ["a.py", "c.py", "b.py"]  # nothing was evicted (and re-tokenized)
    assert counting.calls == 1


def test_an_edit_changes_only_that_files_segment(policy: FileOrder) -> None:
    for name in "abc":
        policy.add(f"{name}.py", source(name))
    before = policy.segments()
    held = copy.deepcopy(before)
    policy.refresh("b.py", source("b").replace("return x + 3", "return x * 3"))
    after = policy.segments()
    assert after[0] == before[0] and after[1] == before[1] and after[3] == before[3]
    assert after[2] != before[2]
    assert before == held  # a snapshot taken earlier does not change
    after[1].append(0)
    after.pop()
    assert policy.segments()[1] == before[1] and len(policy.segments()) == 4


def test_segments_and_entries_exclude_the_current_file(policy: FileOrder, tiny: Model) -> None:
    for name in "abc":
        policy.add(f"{name}.py", source(name))
    layout = detect_layout(tiny)
    segments = policy.segments(exclude="b.py")
    assert segments == [
        layout.head("proj"),
        layout.file_segment("a.py", source("a")),
        layout.file_segment("c.py", source("c")),
    ]
    entries = policy.entries(exclude="b.py")
    assert [e.path for e in entries] == ["a.py", "c.py"]
    assert [e.start for e in entries] == [len(segments[0]), len(segments[0]) + len(segments[1])]


def test_describe_reports_what_the_cache_holds() -> None:
    policy, _ = char_policy()
    policy.add("a.py", sized("a.py", 20))
    policy.add("b.py", sized("b.py", 30))
    head = len(policy.segments()[0])  # <|repo_name|> p \n
    assert head == 3
    assert [e.describe(head + 20 + 29) for e in policy.entries()] == [
        {"path": "a.py", "tokens": 20, "start": head, "cached": True, "truncated": False},
        {"path": "b.py", "tokens": 30, "start": head + 20, "cached": False, "truncated": False},
    ]
    assert policy.entries(exclude="a.py")[0].describe(head + 30)["cached"] is True


# --- budget -------------------------------------------------------------------------------------


def test_pending_files_can_be_tokenized_outside_a_lock() -> None:
    policy, _ = char_policy(budget=1000)
    policy.add("a.py", "x = 1\n")
    (item,) = policy.pending()
    prepared = policy.prepare(item)
    policy.touch("a.py", "x = 2\n")  # changed while it was being tokenized: the result is stale
    policy.fill(item, prepared)
    assert [(p.key, p.text) for p in policy.pending()] == [("a.py", "x = 2\n")]
    (item,) = policy.pending()
    policy.fill(item, policy.prepare(item))
    assert policy.pending() == []


def test_a_new_layout_keeps_the_order_and_drops_what_was_tokenized_for_the_old_one() -> None:
    policy, _ = char_policy(budget=1000)
    for name in "abc":
        policy.add(f"{name}.py", "x = 1\n")
    policy.segments()
    policy.touch("a.py", "x = 2\n")
    (item,) = policy.pending()
    prepared = policy.prepare(item)
    assert policy.layout is not None
    new = ContextLayout.of(policy.layout.layout, "renamed", policy.layout.options)
    policy.relayout(new)  # while a.py was being tokenized: its segment is for the old layout
    policy.fill(item, prepared)
    assert [p.key for p in policy.pending()] == ["b.py", "c.py", "a.py"]
    assert policy.segments()[0] == list(new.head)


def test_evicted_files_are_reported_once() -> None:
    evicted: list[str] = []
    policy = FileOrder(on_evict=evicted.append)
    options = ContextOptions(token_budget=10_000, max_files=4)
    policy.relayout(ContextLayout.of(detect_layout(CharTokenizer()), "p", options))
    for name in "abcde":
        policy.add(f"{name}.py", "x\n")
    policy.segments()
    policy.segments()
    assert evicted == ["a.py", "b.py"] and "a.py" not in policy and list(policy) == ["c.py", "d.py", "e.py"]


def test_eviction_goes_down_to_the_low_water_mark_oldest_first(caplog: pytest.LogCaptureFixture) -> None:
    policy, _ = char_policy(budget=100)
    for name in "abcd":
        policy.add(f"{name}.py", sized(f"{name}.py", 25))
    assert order(policy) == ["a.py", "b.py", "c.py", "d.py"] and policy.total_tokens == 100
    with caplog.at_level(logging.INFO, logger="coderag_daemon.workspace.file_order"):
        policy.add("e.py", sized("e.py", 25))
        assert order(policy) == ["c.py", "d.py", "e.py"]  # 125 -> 75, not just under 100
    assert any("evicted a.py" in r.getMessage() and "least recently used" in r.getMessage() for r in caplog.records)
    policy.add("f.py", sized("f.py", 25))  # back at the budget: no eviction this time
    assert order(policy) == ["c.py", "d.py", "e.py", "f.py"]


def test_files_outside_a_saved_order_leave_first_until_an_edit() -> None:
    policy, _ = char_policy(budget=10_000, max_files=4)  # low-water: 3 files
    policy.prefer(["c.py", "d.py"])  # the budget had evicted a.py and b.py when the cache was saved
    for name in "dcbae":  # opened again, newest first, and one more
        policy.add(f"{name}.py", source(name, 2))
    assert order(policy) == ["c.py", "d.py"]  # the saved context: none of the others cuts it short
    for name in "ef":
        policy.touch(f"{name}.py", source(name, 3))  # edits: recency alone from now on
    policy.add("g.py", source("g", 2))
    policy.add("h.py", source("h", 2))
    assert order(policy) == ["f.py", "g.py", "h.py"]


def test_recently_edited_files_outlive_older_ones() -> None:
    policy, _ = char_policy(budget=100)
    for name in "abcd":
        policy.add(f"{name}.py", sized(f"{name}.py", 25))
    policy.touch("a.py", sized("a.py", 25).replace("x", "y"))
    policy.add("e.py", sized("e.py", 25))
    assert order(policy) == ["d.py", "a.py", "e.py"]


def test_file_count_limit_has_the_same_hysteresis() -> None:
    policy, _ = char_policy(budget=10_000, max_files=4)
    for name in "abcde":
        policy.add(f"{name}.py", "x\n")
    assert order(policy) == ["c.py", "d.py", "e.py"]


def test_a_file_over_the_whole_budget_keeps_its_first_lines() -> None:
    policy, tok = char_policy(budget=100)
    policy.add("small.py", sized("small.py", 20))
    text = "".join(f"line {i:03}\n" for i in range(1000))  # 9 tokens a line; probed, not tokenized whole
    tok.tokenize_calls = 0
    policy.add("big.py", text)
    assert tok.tokenize_calls <= 3
    [entry] = policy.entries()  # the newest file stays; the older one made room
    assert entry.path == "big.py" and entry.truncated and len(entry.tokens) <= 100
    n_lines = (len(entry.tokens) - len("Sbig.py\n")) // 9
    assert tok.detokenize(list(entry.tokens)) == "<|file_sep|>big.py\n" + text[: 9 * n_lines]
    assert len(entry.tokens) + 9 > 100  # one more line would not fit
    assert policy.entries()[0].describe(10_000)["truncated"] is True


def test_a_long_file_of_long_tokens_is_tokenized_whole() -> None:
    policy, _ = char_policy(budget=100)
    text = "".join(" " * 100 + "x\n" for _ in range(20))  # 3 tokens a line, 2040 characters
    policy.add("wide.py", text)
    [entry] = policy.entries()
    assert not entry.truncated and len(entry.tokens) == 1 + len("wide.py\n") + 60


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        ContextOptions(low_water=0)
    with pytest.raises(ValueError):
        ContextOptions(token_budget=0)


def test_context_and_prompts_do_not_load_llama_cpp_or_pygls() -> None:
    code = "import sys, coderag_daemon.workspace.file_order; assert not {'llama_cpp', 'pygls'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
