"""A suggestion continues the word being typed: the prompt leaves out the end of the cursor's line
that a single token could still hold (token healing), the model is held to write it first, and the
suggestion is what follows it; a budget that stops the model inside a word or line drops that part."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from coderag_daemon.engine import ContextCache, EngineOptions, Model
from coderag_daemon.engine.model import SpecialTokens
from coderag_daemon.options import Options
from coderag_daemon.prompting.completion import StopRule, Window, continuation, cursor_window
from coderag_daemon.prompting.prompts import PromptLayout, Vocabulary, detect_layout
from coderag_daemon.worker import jobs
from coderag_daemon.workspace.documents import path_to_uri
from coderag_daemon.workspace.project import Project
from fixtures.tiny_models import tiny_model_path
from tests.sessions import CacheSession

from .conftest import write

# --- a byte-level tokenizer like Qwen2.5-Coder's, with a vocabulary the tests choose --------------------------

# GPT-style pre-tokenization: a run of blanks gives its last blank to the word that follows it.
_WORDS = re.compile(r" ?\w+| ?[^\s\w]+|\s+(?!\S)|\s+")
_VOCAB = (
    "x", "a", "t", "e", "u", "r", "n", "=", ">", "\xc3", "\xa9",
    " ", "  ", "   ", "    ", "     ",
    " r", " re", " ret", " return", " returns", " x", " =", " ==", " >", " >=", " a", " +", " +=",
    "ret", "return", "urn", "\xff", "\xff\xff",
)  # fmt: skip


class BytesTokenizer:
    """Tokens of `_VOCAB` (latin-1 code points stand for bytes), longest match in each pre-token."""

    special = SpecialTokens(
        bos=-1, eos=-1, add_bos=False, fim_prefix=-1, fim_suffix=-1, fim_middle=-1, fim_pad=-1, fim_repo=-1, fim_sep=-1
    )
    chat_template = None
    n_vocab = len(_VOCAB)

    def __init__(self) -> None:
        self.pieces = [p.encode("latin-1") for p in _VOCAB]

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        out = []
        for word in _WORDS.findall(text):
            data = word.encode("utf-8")
            while data:
                token = max(
                    (i for i, p in enumerate(self.pieces) if data.startswith(p)), key=lambda i: len(self.pieces[i])
                )
                out.append(token)
                data = data[len(self.pieces[token]) :]
        return out

    def token_bytes(self, token: int) -> bytes:
        return self.pieces[token]

    def token_id(self, text: str) -> int | None:
        return None

    def texts(self, ids: np.ndarray | None) -> set[str]:
        assert ids is not None
        return {self.pieces[i].decode("latin-1") for i in ids}


@pytest.fixture(scope="module")
def fake() -> BytesTokenizer:
    return BytesTokenizer()


@pytest.fixture(scope="module")
def plain(fake: BytesTokenizer) -> PromptLayout:
    return PromptLayout("plain", fake)


def test_the_prompt_leaves_out_the_partial_word(plain: PromptLayout) -> None:
    assert plain.healed_text("def f():\n    ret") == " ret"  # '   ', ' ret': ' return' is one token
    assert plain.healed_text("x = a +") == " +"  # ' +=' is one token
    assert plain.healed_text("    return ") == " "  # the next word brings its own blank
    assert plain.healed_text("    ") == "    "  # a line of indentation only
    assert plain.healed_text("a\n") == ""  # nothing typed on the line: nothing to heal
    assert plain.healed_text("x = \xe9") == ""  # no token holds both bytes of the character


def test_the_first_token_writes_all_of_the_partial_word(plain: PromptLayout, fake: BytesTokenizer) -> None:
    assert fake.texts(plain.healing(" ret")(b"")) == {" ret", " return", " returns"}
    assert fake.texts(plain.healing(" >=")(b"")) == {" >="}  # not ' >' meaning ' > x', then '=x'


def test_a_run_of_blanks_may_leave_its_last_one_to_the_word(plain: PromptLayout, fake: BytesTokenizer) -> None:
    allowed = plain.healing("    ")
    assert fake.texts(allowed(b"")) == {"    ", "     ", "   "}  # '    return' is '   ', ' return'
    # after three blanks, any token that starts with a blank: the run may end anywhere
    assert fake.texts(allowed(b"   ")) == {t for t in _VOCAB if t.startswith(" ")}


def test_once_written_any_token_may_follow(plain: PromptLayout) -> None:
    allowed = plain.healing(" ret")
    assert allowed(b" return") is None
    assert allowed(b" ret") is None
    assert allowed(b"x") is None  # cannot be written any more: the caller drops the result


def test_the_vocabulary_finds_tokens_by_their_start(fake: BytesTokenizer) -> None:
    vocabulary = Vocabulary(fake, exclude=frozenset({_VOCAB.index(" returns")}))
    assert fake.texts(vocabulary.starting_with(b" re")) == {" re", " ret", " return"}
    assert fake.texts(vocabulary.starting_with(b"\xff")) == {"\xff", "\xff\xff"}  # no byte above 0xff
    assert fake.texts(vocabulary.spelling(b" ret")) == {" ret"}
    assert vocabulary.extends(b" retu") and not vocabulary.extends(b" returns")


def test_a_suggestion_is_what_follows_the_healed_text() -> None:
    assert continuation(" ret", " return x") == "urn x"
    assert continuation("", "x = 1") == "x = 1"
    assert continuation(" ret", " re") == ""  # stopped before it was written
    assert continuation(" ret", "    return x") == ""  # not what is typed: no suggestion


# --- what a budget stops --------------------------------------------------------------------------------------


def test_a_budget_cut_drops_the_word_it_was_writing() -> None:
    rule = StopRule.at(Window("def f(token, now):\n    return ", ""))
    assert rule.cut_short("token_is") == ""
    assert rule.cut_short("token_is_expired(token, now)") == "token_is_expired(token, now)"
    assert rule.cut_short("now > ") == "now > "


def test_a_budget_cut_drops_the_line_it_was_writing() -> None:
    rule = StopRule.at(Window("    if token:\n        ret", ""))
    assert rule.cut_short("urn now\n        return tok") == "urn now"


def test_a_budget_cut_ends_the_block_at_a_last_line_that_dedents() -> None:
    rule = StopRule.at(Window("def f(token, now):\n", ""))
    assert rule.cut("    return x\n\n\ndef") is None  # the last line may still grow
    assert rule.cut_short("    return x\n\n\ndef") == "    return x\n\n"


# --- whole completions on the tiny model ----------------------------------------------------------------------


class TastefulCache(ContextCache):
    """The tiny model with a taste: the `liked` tokens outrank all others, by their scores. Liking the
    indentation most, it starts its answer at the start of a line again, as Qwen2.5-Coder-0.5B did
    at '    ret' ('    return ...')."""

    def __init__(self, model: Model, liked: dict[str, float]) -> None:
        super().__init__(model, EngineOptions(n_ctx=2048, n_batch=256, n_threads=1))
        self.bias = np.zeros(model.n_vocab, dtype=np.float32)
        for i in range(model.n_vocab):
            self.bias[i] = liked.get(model.token_bytes(i).decode("utf-8", "replace"), 0.0)

    def logits(self) -> np.ndarray:
        return super().logits() + self.bias


LIKED = {"    ": 60.0, "return": 50.0, " isinstance": 50.0, "value": 50.0}


@pytest.fixture(scope="module")
def tiny() -> Model:
    return Model(tiny_model_path("dense"))


@pytest.fixture
def completing(tmp_path: Path, tiny: Model):  # noqa: ANN201
    """complete(text) -> the suggestion at the end of `text`, as auth.py of a workspace."""
    path = write(tmp_path / "ws" / "auth.py", "")
    options = Options(max_completion_tokens=4, completion_wait_tokens=1 << 17)
    project = Project(options)
    project.set_roots([path.parent])
    project.set_layout(detect_layout(tiny, options.prompt_options()))
    session = CacheSession(TastefulCache(tiny, LIKED))

    def complete(text: str) -> str:
        doc = project.opened(path_to_uri(path), text, 1, "python")
        return jobs.complete(session, project, doc, cursor_window(text, len(text)), options).text

    return complete


HEAD = "import os\n\n\ndef check(key, data):\n"


@pytest.mark.parametrize(
    ("line", "rest"),
    [
        ("ret", "urn"),  # a partial word at the start of a line
        ("    ret", "urn"),  # after indentation
        ("    ok = isinst", "ance"),  # inside a name
        ("    ok = key ==val", "ue"),  # after an operator
        ('    name = "val', "ue"),  # inside a string
    ],
)
def test_the_suggestion_continues_the_typed_word(completing, line: str, rest: str) -> None:  # noqa: ANN001
    assert completing(HEAD + line).startswith(rest)


def test_the_prompt_ends_before_the_partial_word(tmp_path: Path, tiny: Model) -> None:
    path = write(tmp_path / "ws" / "auth.py", "")
    project = Project(Options())
    project.set_roots([path.parent])
    layout = detect_layout(tiny)
    project.set_layout(layout)
    text = HEAD + "    ret"
    doc = project.opened(path_to_uri(path), text, 1, "python")
    tail = jobs.completion_target(project, doc, cursor_window(text, len(text)), Options())[-1]
    assert tail == layout.completion_tail("auth.py", HEAD + "    ", "")
