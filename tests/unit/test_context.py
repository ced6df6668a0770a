"""The context policy: LRU order, token budget with low-water eviction, per-text token caching."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys

import pytest

from coderag_daemon.prompting.context import ContextOptions, ContextPolicy
from coderag_daemon.engine import Model
from coderag_daemon.prompting.prompts import detect_layout
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


@pytest.fixture
def policy(counting: CountingModel) -> ContextPolicy:
    return ContextPolicy(detect_layout(counting), "proj")


def source(name: str, lines: int = 20) -> str:
    return "".join(f"def {name}_{i}(x):\n    return x + {i}\n" for i in range(lines))


def order(policy: ContextPolicy) -> list[str]:
    return [e.path for e in policy.entries()]


def char_policy(budget: int = 100, max_files: int = 64) -> tuple[ContextPolicy, CharTokenizer]:
    """A policy over the one-token-per-character fake, where segment sizes are exact."""
    tok = CharTokenizer()
    return ContextPolicy(detect_layout(tok), "p", ContextOptions(token_budget=budget, max_files=max_files)), tok


def sized(path: str, n: int) -> str:
    """Text whose qwen-repo segment is `n` fake tokens: <|file_sep|>, path, newline, body."""
    return "x" * (n - len(path) - 3) + "\n"


# --- order --------------------------------------------------------------------------------------


def test_opened_files_are_appended(policy: ContextPolicy) -> None:
    for name in "abc":
        policy.open(f"{name}.py", source(name))
    assert order(policy) == ["a.py", "b.py", "c.py"]


def test_an_edit_moves_the_file_to_the_tail_and_a_save_does_not(policy: ContextPolicy) -> None:
    for name in "abc":
        policy.open(f"{name}.py", source(name))
    policy.touched("a.py", source("a") + "# more\n")
    assert order(policy) == ["b.py", "c.py", "a.py"]
    policy.touched("b.py", source("b"))  # didSave, text unchanged
    assert order(policy) == ["b.py", "c.py", "a.py"]


def test_editing_an_unknown_file_adds_it_at_the_tail(policy: ContextPolicy) -> None:
    policy.open("a.py", source("a"))
    policy.touched("b.py", source("b"))
    assert order(policy) == ["a.py", "b.py"]


def test_reopening_or_refreshing_keeps_the_place(policy: ContextPolicy, tiny: Model) -> None:
    for name in "abc":
        policy.open(f"{name}.py", source(name))
    policy.open("a.py", source("a"))
    policy.update_text("b.py", "changed on disk\n")
    policy.update_text("zzz.py", "not in the context\n")
    assert order(policy) == ["a.py", "b.py", "c.py"]
    assert list(policy.entries()[1].tokens) == detect_layout(tiny).file_segment("b.py", "changed on disk\n")


def test_remove(policy: ContextPolicy) -> None:
    for name in "abc":
        policy.open(f"{name}.py", source(name))
    policy.remove("b.py")
    policy.remove("missing.py")
    assert order(policy) == ["a.py", "c.py"] and "b.py" not in policy and len(policy) == 2


def test_rename_keeps_the_place_and_shows_the_new_path(policy: ContextPolicy, tiny: Model) -> None:
    for name in "abcd":
        policy.open(f"{name}.py", source(name))
    policy.rename("b.py", "pkg/b2.py")
    assert order(policy) == ["a.py", "pkg/b2.py", "c.py", "d.py"]
    assert list(policy.entries()[1].tokens) == detect_layout(tiny).file_segment("pkg/b2.py", source("b"))
    policy.rename("a.py", "d.py")  # onto a file in the context: the moved file replaces it
    assert order(policy) == ["d.py", "pkg/b2.py", "c.py"]
    assert policy.entries()[0].tokens == tuple(detect_layout(tiny).file_segment("d.py", source("a")))


# --- tokens -------------------------------------------------------------------------------------


def test_files_are_tokenized_once_per_text(policy: ContextPolicy, counting: CountingModel) -> None:
    for name in "abc":
        policy.open(f"{name}.py", source(name, 60))
    policy.segments()  # tokenizes the three files
    counting.calls = 0
    policy.segments()
    policy.segments(exclude="a.py")
    policy.describe(0)
    policy.touched("b.py", source("b", 60))
    policy.open("c.py", source("c", 60))
    assert counting.calls == 0
    policy.touched("b.py", source("b", 60) + "x = 1\n")
    assert counting.calls == 0  # an edit only records text; the model worker tokenizes on read
    assert order(policy) == ["a.py", "c.py", "b.py"]  # nothing was evicted (and re-tokenized)
    assert counting.calls == 1


def test_an_edit_changes_only_that_files_segment(policy: ContextPolicy) -> None:
    for name in "abc":
        policy.open(f"{name}.py", source(name))
    before = policy.segments()
    held = copy.deepcopy(before)
    policy.update_text("b.py", source("b").replace("return x + 3", "return x * 3"))
    after = policy.segments()
    assert after[0] == before[0] and after[1] == before[1] and after[3] == before[3]
    assert after[2] != before[2]
    assert before == held  # a snapshot taken earlier does not change
    after[1].append(0)
    after.pop()
    assert policy.segments()[1] == before[1] and len(policy.segments()) == 4


def test_segments_and_entries_exclude_the_current_file(policy: ContextPolicy, tiny: Model) -> None:
    for name in "abc":
        policy.open(f"{name}.py", source(name))
    layout = detect_layout(tiny)
    segments = policy.segments(exclude="b.py")
    assert segments == [layout.head("proj"), layout.file_segment("a.py", source("a")), layout.file_segment("c.py", source("c"))]
    entries = policy.entries(exclude="b.py")
    assert [e.path for e in entries] == ["a.py", "c.py"]
    assert [e.start for e in entries] == [len(segments[0]), len(segments[0]) + len(segments[1])]


def test_describe_reports_what_the_cache_holds() -> None:
    policy, _ = char_policy()
    policy.open("a.py", sized("a.py", 20))
    policy.open("b.py", sized("b.py", 30))
    head = len(policy.segments()[0])  # <|repo_name|> p \n
    assert head == 3
    assert policy.describe(head + 20 + 29) == [
        {"path": "a.py", "tokens": 20, "start": head, "cached": True, "truncated": False},
        {"path": "b.py", "tokens": 30, "start": head + 20, "cached": False, "truncated": False},
    ]
    assert policy.describe(head + 30, exclude="a.py")[0]["cached"] is True


# --- budget -------------------------------------------------------------------------------------


def test_pending_files_can_be_tokenized_outside_a_lock() -> None:
    policy, _ = char_policy(budget=1000)
    policy.open("a.py", "x = 1\n")
    ((path, text),) = policy.pending()
    prepared = policy.prepare(path, text)
    policy.touched("a.py", "x = 2\n")  # changed while it was being tokenized: the result is stale
    policy.fill(path, prepared)
    assert policy.pending() == [("a.py", "x = 2\n")]
    policy.fill("a.py", policy.prepare("a.py", "x = 2\n"))
    assert policy.pending() == []


def test_eviction_goes_down_to_the_low_water_mark_oldest_first(caplog: pytest.LogCaptureFixture) -> None:
    policy, _ = char_policy(budget=100)
    for name in "abcd":
        policy.open(f"{name}.py", sized(f"{name}.py", 25))
    assert order(policy) == ["a.py", "b.py", "c.py", "d.py"] and policy.total_tokens == 100
    with caplog.at_level(logging.INFO, logger="coderag_daemon.prompting.context"):
        policy.open("e.py", sized("e.py", 25))
        assert order(policy) == ["c.py", "d.py", "e.py"]  # 125 -> 75, not just under 100
    assert any("evicted a.py" in r.getMessage() and "least recently used" in r.getMessage() for r in caplog.records)
    policy.open("f.py", sized("f.py", 25))  # back at the budget: no eviction this time
    assert order(policy) == ["c.py", "d.py", "e.py", "f.py"]


def test_recently_edited_files_outlive_older_ones() -> None:
    policy, _ = char_policy(budget=100)
    for name in "abcd":
        policy.open(f"{name}.py", sized(f"{name}.py", 25))
    policy.touched("a.py", sized("a.py", 25).replace("x", "y"))
    policy.open("e.py", sized("e.py", 25))
    assert order(policy) == ["d.py", "a.py", "e.py"]


def test_file_count_limit_has_the_same_hysteresis() -> None:
    policy, _ = char_policy(budget=10_000, max_files=4)
    for name in "abcde":
        policy.open(f"{name}.py", "x\n")
    assert order(policy) == ["c.py", "d.py", "e.py"]


def test_a_file_over_the_whole_budget_keeps_its_first_lines() -> None:
    policy, tok = char_policy(budget=100)
    policy.open("small.py", sized("small.py", 20))
    text = "".join(f"line {i:03}\n" for i in range(1000))  # 9 tokens a line; probed, not tokenized whole
    tok.tokenize_calls = 0
    policy.open("big.py", text)
    assert tok.tokenize_calls <= 3
    [entry] = policy.entries()  # the newest file stays; the older one made room
    assert entry.path == "big.py" and entry.truncated and len(entry.tokens) <= 100
    n_lines = (len(entry.tokens) - len("Sbig.py\n")) // 9
    assert tok.detokenize(list(entry.tokens)) == "<|file_sep|>big.py\n" + text[: 9 * n_lines]
    assert len(entry.tokens) + 9 > 100  # one more line would not fit
    assert policy.describe(10_000)[0]["truncated"] is True


def test_a_long_file_of_long_tokens_is_tokenized_whole() -> None:
    policy, _ = char_policy(budget=100)
    text = "".join(" " * 100 + "x\n" for _ in range(20))  # 3 tokens a line, 2040 characters
    policy.open("wide.py", text)
    [entry] = policy.entries()
    assert not entry.truncated and len(entry.tokens) == 1 + len("wide.py\n") + 60


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        ContextOptions(low_water=0)
    with pytest.raises(ValueError):
        ContextOptions(token_budget=0)


def test_context_and_prompts_do_not_load_llama_cpp_or_pygls() -> None:
    code = "import sys, coderag_daemon.prompting.context; assert not {'llama_cpp', 'pygls'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
