"""Where the prompt is laid out: token lists for the file context, completion and chat tails.

The model sees one sequence: a head, one segment per file, then a request tail. Each piece is
tokenized on its own so that an edit in one file changes only that file's tokens (the engine then
reprocesses from there). Control tokens are inserted by id; text from files, questions and
selections is tokenized with ``special=False``, so a file containing ``<|file_sep|>`` cannot forge one.

Three layouts, chosen from the vocabulary:

- ``qwen-repo``: Qwen2.5-Coder's repository form, ``<|repo_name|>name`` then ``<|file_sep|>path``
  per file, the request with the suffix before the lines nearest the cursor:
  ``<|file_sep|>path<|fim_prefix|>imports, lines above<|fim_suffix|>suffix<|fim_middle|>lines near``
  (see `PromptOptions.suffix_first`);
- ``fim``: other fill-in-the-middle vocabularies (CodeLlama, StarCoder, DeepSeek): files as text
  under a path comment, the request as PRE prefix SUF suffix MID with the vocabulary's own ids;
- ``plain``: no FIM tokens: files as text, the request is the current file's prefix to continue.

A completion's prefix ends before the last token(s) of the cursor's line, which the model then has
to write first (token healing, `PromptLayout.healed_text`): a prefix cut inside a word ends in a
token the model would not have chosen there.
"""

from __future__ import annotations

import bisect
import logging
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Literal, Protocol

import jinja2
import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..settings import default_of
from .languages import line_comment

if TYPE_CHECKING:
    from ..engine.model import SpecialTokens

log = logging.getLogger("coderag_daemon.prompting.prompts")

Family = Literal["qwen-repo", "fim", "plain"]

SYSTEM_PROMPT = (
    "You are a coding assistant inside the user's editor. The files above are the user's project; "
    "use them to answer. Be concise and show code where it helps."
)

DEFINITIONS_PATH = "_signatures.pyi"
"""The stub file a completion's tail shows the definitions of the names near the cursor in."""

# Tokens of a request tail besides its budgeted text: control tokens, the path, the system prompt,
# the chat template's markup of each turn.
_TAIL_MARKUP = 256

# Control tokens that end a generation in any family that has them (besides the layout's own ids).
_STOP_TEXTS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_turn>", "<|eot_id|>")

# Message contents are replaced by these marks while the chat template renders, then spliced back
# as tokens: private-use characters, which no template trims or escapes.
_MARK = "\ue000{}\ue001"
_MARK_RE = re.compile("\ue000(\\w+)\ue001")


class Tokenizer(Protocol):
    """What the layouts need from a model (``engine.Model`` fits; tests pass fakes)."""

    special: SpecialTokens
    chat_template: str | None
    n_vocab: int

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...

    def token_bytes(self, token: int) -> bytes: ...

    def token_id(self, text: str) -> int | None: ...


@dataclass(frozen=True)
class PromptOptions:
    """Token budgets of the request tail, so a long line or question cannot crowd out the answer."""

    prefix_tokens: int = 2048
    """Text before the cursor: whole lines, the nearest kept. A safety net for very long lines: the
    cursor window (completion.py) normally decides, and keeps its first line stable while typing."""
    suffix_tokens: int = 96
    """Text after the cursor: whole lines, the nearest kept."""
    head_tokens: int = 256
    """The file's imports above the cursor window (completion.file_head): whole lines, the first
    kept. Taken from `prefix_tokens`, so a request needs no more room than before."""
    suffix_first: bool = True
    """qwen-repo puts the suffix before the prefix's lines nearest the cursor (`completion_tail`).
    Measured on real commits (docs/BENCHMARKS.md, "Experiments on the prompt") it doubles the lines
    the model gets exactly right, and typing then only appends to the request, since the text after
    the cursor stays the same. False gives the prefix-first order llama-server's ``/infill`` sends,
    which the benchmarks' peers use."""
    chat_tokens: int = 1024
    """Conversation text of a chat tail; older turns go first, then the middle of the longest."""
    retrieval_tokens: int = default_of("retrieval_tokens")
    """Code retrieved from the workspace index into a chat tail (0: none)."""

    def __post_init__(self) -> None:
        for name in ("prefix_tokens", "suffix_tokens", "head_tokens", "chat_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive number of tokens, got {getattr(self, name)}")
        if self.head_tokens >= self.prefix_tokens:
            raise ValueError(f"head_tokens ({self.head_tokens}) must be below prefix_tokens ({self.prefix_tokens})")
        if self.retrieval_tokens < 0:
            raise ValueError(f"retrieval_tokens must not be negative, got {self.retrieval_tokens}")

    @classmethod
    def for_context(cls, n_ctx: int, retrieval_tokens: int | None = None) -> PromptOptions:
        """The default budgets (or the given retrieval budget), made smaller for small context
        windows so a request still fits."""
        default = cls()
        if retrieval_tokens is None:
            retrieval_tokens = default.retrieval_tokens
        return cls(
            prefix_tokens=min(default.prefix_tokens, n_ctx // 4),
            suffix_tokens=min(default.suffix_tokens, n_ctx // 32),
            head_tokens=min(default.head_tokens, n_ctx // 32),
            chat_tokens=min(default.chat_tokens, n_ctx // 8),
            retrieval_tokens=min(retrieval_tokens, n_ctx // 8),
        )

    def request_tokens(self, completion_tokens: int, chat_tokens: int = 0) -> int:
        """The most a request tail and its answer take: a completion (cursor window and answer) or
        a chat (conversation, retrieved code and answer), whichever is larger."""
        completion = self.prefix_tokens + self.suffix_tokens + completion_tokens
        chat = self.chat_tokens + self.retrieval_tokens + chat_tokens
        return _TAIL_MARKUP + max(completion, chat)


@dataclass(frozen=True)
class PromptLayout:
    """How one model family wants files and requests laid out; every method returns fresh lists."""

    family: Family
    tokenizer: Tokenizer = field(repr=False, compare=False)
    file_sep: int = -1
    """``<|file_sep|>`` of qwen-repo; -1 otherwise."""
    repo_name: int = -1
    """``<|repo_name|>`` of qwen-repo; -1 otherwise."""
    options: PromptOptions = field(default_factory=PromptOptions)

    @property
    def _special(self) -> SpecialTokens:
        return self.tokenizer.special

    def _text(self, text: str) -> list[int]:
        return self.tokenizer.tokenize(text, special=False)

    # --- the file context ---------------------------------------------------------------------

    def head(self, repo_name: str) -> list[int]:
        """The first segment: BOS when the model wants one, and the repository name for qwen-repo."""
        tokens = [self._special.bos] if self._special.add_bos and self._special.bos >= 0 else []
        if self.family == "qwen-repo":
            tokens += [self.repo_name, *self._text(f"{repo_name}\n")]
        return tokens

    def file_segment(self, path: str, text: str) -> list[int]:
        """One file of the context; depends on nothing but `path` and `text`."""
        body = text if text.endswith("\n") or not text else text + "\n"
        if self.family == "qwen-repo":
            return [self.file_sep, *self._text(f"{path}\n{body}")]
        return self._text(f"{_header(path)}{body}\n")

    # --- request tails ------------------------------------------------------------------------

    def completion_tail(
        self, path: str, prefix: str, suffix: str, definitions: str = "", head: str = "", near: int = 0
    ) -> list[int]:
        """The request for a completion at the cursor between `prefix` and `suffix` in `path`, after
        `definitions` (signatures of names used near the cursor, prompting/definitions.py) shown as a
        stub file of their own. `head`, the file's imports above the cursor window
        (completion.file_head), opens the file's text, where the model has seen imports written.

        Prefix and suffix are cut to their token budgets at line boundaries, keeping the lines
        nearest the cursor; the head keeps its first whole lines, and the prefix has the rest of its
        budget. The ``plain`` layout has no way to show the suffix and drops it.

        With `PromptOptions.suffix_first`, qwen-repo asks
        ``<|fim_prefix|>head, prefix[:near]<|fim_suffix|>suffix<|fim_middle|>prefix[near:]``: the
        form the model learned, with the lines nearest the cursor as the start of the middle it is
        writing. Typing extends the request, and moving the cursor among those lines reprocesses
        only the suffix and them, not the whole window.
        """
        tok, budget = self.tokenizer, self.options.prefix_tokens
        opening = _first_lines(tok, head, self.options.head_tokens, whole=True) if head else []
        stubs = self.file_segment(DEFINITIONS_PATH, definitions) if definitions else []
        split = self.family == "qwen-repo" and self.options.suffix_first
        closing = _last_lines(tok, prefix[near:] if split else prefix, budget - len(opening))
        if split and near and budget > len(opening) + len(closing):
            opening += _last_lines(tok, prefix[:near], budget - len(opening) - len(closing))
        if self.family == "plain":
            return [*stubs, *self._text(_header(path)), *opening, *closing]
        after = _first_lines(tok, suffix, self.options.suffix_tokens)
        sp = self._special
        if self.family == "qwen-repo":
            lead = [self.file_sep, *self._text(f"{path}\n"), sp.fim_prefix]
            if split:
                return [*stubs, *lead, *opening, sp.fim_suffix, *after, sp.fim_middle, *closing]
        else:
            lead = [sp.fim_prefix, *self._text(_header(path))]
        return [*stubs, *lead, *opening, *closing, sp.fim_suffix, *after, sp.fim_middle]

    def healed_text(self, prefix: str) -> str:
        """The end of `prefix` a completion prompt leaves out, for the model to write again (token
        healing): the last tokens of the cursor's line, as many as a single token could still
        hold, starting on a whole character (none when the last character is split over tokens
        that no single one holds).

        A prefix that stops inside a word ends in a token the model would not have put there
        ('    ret' is '   ', ' ret' where '    return' is '   ', ' return'); seeing text unlike its
        own, the model may start the line anew ('ret    return'). The generation is instead held
        to start with this text (`healing`), so it picks the token it would have used, and the
        suggestion is what follows it."""
        line = prefix[prefix.rfind("\n") + 1 :]
        data, written, healed = line.encode("utf-8"), b"", b""
        for token in reversed(self.tokenizer.tokenize(line)):
            written = self.tokenizer.token_bytes(token) + written
            if not data.endswith(written) or not self.vocabulary.extends(written):
                break
            if _starts_a_character(written):
                healed = written
        return healed.decode("utf-8")

    def healing(self, healed: str) -> Callable[[bytes], np.ndarray | None]:
        """The constraint that has a generation start with `healed`: from the bytes written so far,
        the ids of the tokens allowed next, or None (any token) once it is written or when it
        cannot be (the caller then drops the result).

        One token can write all of `healed` (`healed_text` stops before it could not). A token may
        stop inside it only before blanks that the tokenizer gives to a word that follows: in
        '    return', a run of spaces gives its last one to the word ('   ', ' return'). A model let
        stop anywhere would write ' >' of ' >=' or '.exp' of '.expi' meaning other words
        (' > x', '.exp < now'), and then be held to '=x' or 'ires'."""
        data = healed.encode("utf-8")
        splits = sorted(
            end for end in self._boundaries(healed + "x", data) - self._boundaries(healed, data) if data[end:].isspace()
        )
        vocabulary = self.vocabulary

        def allowed(written: bytes) -> np.ndarray | None:
            if len(written) >= len(data) or not data.startswith(written):
                return None
            ids = [vocabulary.starting_with(data[len(written) :])]
            ids += [vocabulary.spelling(data[len(written) : end]) for end in splits if end > len(written)]
            found = np.concatenate(ids)
            return found if found.size else None

        return allowed

    def _boundaries(self, text: str, within: bytes) -> set[int]:
        """Byte offsets inside `within` (a start of `text`) where the tokens of `text` meet."""
        found, written = set(), b""
        for token in self.tokenizer.tokenize(text):
            written += self.tokenizer.token_bytes(token)
            if len(written) >= len(within) or not within.startswith(written):
                break
            found.add(len(written))
        return found

    @property
    def vocabulary(self) -> Vocabulary:
        """The token texts of this layout's vocabulary, built once per tokenizer (0.3 s for 150K tokens)."""
        vocabulary = _VOCABULARIES.get(self.tokenizer)
        if vocabulary is None:
            vocabulary = _VOCABULARIES[self.tokenizer] = Vocabulary(self.tokenizer, self.stop_tokens)
        return vocabulary

    def chat_tail(
        self, messages: Sequence[Mapping[str, str]], context_note: str | None = None, retrieved: str = ""
    ) -> list[int]:
        """The conversation after the file context, ending where the assistant's answer starts.

        `messages` are ``{"role", "content"}`` dicts, oldest first, the last one the user's question;
        `retrieved` (code from other files, under ``path:line`` labels) and `context_note` (e.g.
        where the cursor is) join the system message. The chat template's own markup is tokenized
        with control tokens; every message content is spliced in as plain text.
        """
        code = self._text(f"\n\n{retrieved}")[: self.options.retrieval_tokens] if retrieved else []
        note = _cut_middle(self._text(f"\n\n{context_note}"), self.options.chat_tokens // 2) if context_note else []
        turns = _fit_turns(
            [(m["role"], self._text(m["content"])) for m in messages], self.options.chat_tokens - len(note)
        )
        convo = [("system", self._text(SYSTEM_PROMPT) + code + note), *turns]
        return _splice(self.tokenizer, self._render(convo), [tokens for _, tokens in convo], self._special.eos)

    def _render(self, convo: list[tuple[str, list[int]]]) -> str:
        """The conversation as text with a mark in place of each content: the model's template when
        it renders (system folded into the first user turn if it rejects a system role), else a
        plain Question/Answer form."""
        marked = [{"role": role, "content": _MARK.format(i)} for i, (role, _) in enumerate(convo)]
        if self._template is not None:
            for attempt in (marked, _fold_system(marked)):
                try:
                    return self._template.render(
                        messages=attempt, add_generation_prompt=True, bos_token="", eos_token=_MARK.format("eos")
                    )
                except jinja2.TemplateError as exc:
                    error = exc
            log.warning("the model's chat template failed (%s); using a plain Question/Answer prompt", error)
        return _plain_chat(marked)

    @cached_property
    def _template(self) -> jinja2.Template | None:
        source = self.tokenizer.chat_template
        if not source:
            return None
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals.update(raise_exception=_raise_template_error, strftime_now=lambda f: datetime.now().strftime(f))
        try:
            return env.from_string(source)
        except jinja2.TemplateError as exc:
            log.warning("the model's chat template does not compile (%s); chat uses a plain prompt", exc)
            return None

    @property
    def chat_stop_strings(self) -> tuple[str, ...]:
        """Strings that end a chat answer: the plain form's next question (templates end with tokens)."""
        return ("\nQuestion:",) if self._template is None else ()

    @cached_property
    def stop_tokens(self) -> frozenset[int]:
        """Control tokens that end a completion or answer: any FIM, file or turn marker, EOS."""
        sp = self._special
        ids = {
            sp.eos,
            sp.fim_prefix,
            sp.fim_suffix,
            sp.fim_middle,
            sp.fim_pad,
            sp.fim_repo,
            sp.fim_sep,
            self.file_sep,
            self.repo_name,
        }
        found = {self.tokenizer.token_id(t) for t in _STOP_TEXTS}
        return frozenset(i for i in ids | found if i is not None and i >= 0)


class Vocabulary:
    """The text of every token a completion may write, sorted by its bytes, so that the tokens
    that start with a given text, or spell exactly it, are found by bisection."""

    def __init__(self, tokenizer: Tokenizer, exclude: frozenset[int] = frozenset()) -> None:
        """`exclude`: tokens never to write (control tokens have no text and are left out anyway)."""
        pieces = sorted((tokenizer.token_bytes(i), i) for i in range(tokenizer.n_vocab) if i not in exclude)
        pieces = [(text, i) for text, i in pieces if text]
        self._texts = [text for text, _ in pieces]
        self._ids = np.array([i for _, i in pieces], dtype=np.intp)

    def extends(self, text: bytes) -> bool:
        """Whether some token starts with `text`."""
        return self.starting_with(text).size > 0

    def starting_with(self, text: bytes) -> np.ndarray:
        """Ids of the tokens whose text starts with `text`."""
        lo = bisect.bisect_left(self._texts, text)
        bound = _successor(text)
        return self._ids[lo : len(self._texts) if bound is None else bisect.bisect_left(self._texts, bound, lo)]

    def spelling(self, text: bytes) -> np.ndarray:
        """Ids of the tokens whose text is `text`."""
        lo = bisect.bisect_left(self._texts, text)
        return self._ids[lo : bisect.bisect_right(self._texts, text, lo)]


_VOCABULARIES: weakref.WeakKeyDictionary[Tokenizer, Vocabulary] = weakref.WeakKeyDictionary()
"""Per tokenizer, so a layout made anew for new settings does not build it again."""


def detect_layout(tokenizer: Tokenizer, options: PromptOptions | None = None) -> PromptLayout:
    """The layout of a model, from the control tokens its vocabulary has."""
    sp = tokenizer.special
    options = options or PromptOptions()
    if sp.has_fim:
        repo, sep = tokenizer.token_id("<|repo_name|>"), tokenizer.token_id("<|file_sep|>")
        if repo is not None and sep is not None:
            layout = PromptLayout("qwen-repo", tokenizer, file_sep=sep, repo_name=repo, options=options)
        else:
            layout = PromptLayout("fim", tokenizer, options=options)
    else:
        layout = PromptLayout("plain", tokenizer, options=options)
    log.info("prompt layout: %s", layout.family)
    return layout


# --- helpers --------------------------------------------------------------------------------------


def chat_note(path: str, line: int | None = None, selected: str = "") -> str:
    """Where the user is, for a chat's request: the file, the line (0-based in, 1-based in the
    text) and the selected text, if any."""
    where = f"The user is looking at {path}" + (f", line {line + 1}" if line is not None else "")
    return f"{where}.\nThe user selected:\n```\n{selected}\n```" if selected else where


def _header(path: str) -> str:
    return f"{line_comment(path)} {path}\n"


def _successor(text: bytes) -> bytes | None:
    """The least byte string above every string that starts with `text` (None: there is none)."""
    text = text.rstrip(b"\xff")
    return text[:-1] + bytes([text[-1] + 1]) if text else None


def _starts_a_character(data: bytes) -> bool:
    """Whether `data` is empty or starts on a UTF-8 character (not on a continuation byte)."""
    return not data or data[0] & 0xC0 != 0x80


_CUT_STEP_LINES = 16


def _last_lines(tok: Tokenizer, text: str, budget: int) -> list[int]:
    """Tokens of a tail of `text` made of whole lines within `budget` (the line at the cursor is
    kept even when alone it is too long: then its last `budget` tokens).

    When lines must go, they go from the start in steps of `_CUT_STEP_LINES`: cutting just enough
    would move the first line, and so reprocess the whole tail, on every keystroke."""
    lines = text.splitlines(keepends=True)
    start, used = len(lines), 0
    while start > 0:
        used += len(tok.tokenize(lines[start - 1]))
        if used > budget:
            break
        start -= 1
    stepped = -(-start // _CUT_STEP_LINES) * _CUT_STEP_LINES
    if stepped < len(lines):
        start = stepped
    elif start == len(lines) and lines:
        start -= 1
    return tok.tokenize("".join(lines[start:]))[-budget:]


def _first_lines(tok: Tokenizer, text: str, budget: int, whole: bool = False) -> list[int]:
    """Tokens of the longest head of `text` made of whole lines within `budget` (the first line is
    kept even when alone it is too long: then its first `budget` tokens; none of it when `whole`)."""
    lines = text.splitlines(keepends=True)
    end, used = 0, 0
    while end < len(lines):
        used += len(tok.tokenize(lines[end]))
        if used > budget:
            break
        end += 1
    return tok.tokenize("".join(lines[: end if whole else max(end, 1)]))[:budget]


def _fit_turns(turns: list[tuple[str, list[int]]], budget: int) -> list[tuple[str, list[int]]]:
    """Drop the oldest turns until the rest fit (a conversation still starts with the user), then
    cut the middle out of what is still too long: a question's start and end say the most."""
    while len(turns) > 1 and sum(len(t) for _, t in turns) > budget:
        turns = turns[1:]
        while len(turns) > 1 and turns[0][0] != "user":
            turns = turns[1:]
    excess = sum(len(t) for _, t in turns) - budget
    if excess > 0:
        role, tokens = turns[-1]
        turns = [*turns[:-1], (role, _cut_middle(tokens, max(len(tokens) - excess, 0)))]
    return turns


def _cut_middle(tokens: list[int], keep: int) -> list[int]:
    """At most `keep` tokens: the start and the end, without the middle."""
    if len(tokens) <= keep:
        return tokens
    return tokens[: keep - keep // 2] + tokens[len(tokens) - keep // 2 :]


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """For templates without a system role: the system text opens the first user message."""
    system, rest = messages[0], messages[1:]
    if not rest or rest[0]["role"] != "user":
        return [{"role": "user", "content": system["content"]}, *rest]
    return [{"role": "user", "content": system["content"] + "\n\n" + rest[0]["content"]}, *rest[1:]]


def _plain_chat(messages: list[dict[str, str]]) -> str:
    parts = ["\n\n"]
    for m in messages:
        if m["role"] == "assistant":
            parts.append(f"Answer: {m['content']}\n\n")
        elif m["role"] == "user":
            parts.append(f"Question: {m['content']}\n")
        else:
            parts.append(f"{m['content']}\n\n")
    parts.append("Answer:")
    return "".join(parts)


def _splice(tok: Tokenizer, rendered: str, contents: list[list[int]], eos: int) -> list[int]:
    """Tokens of `rendered`: markup with control tokens parsed, each mark replaced by its content's
    tokens (or the EOS id)."""
    out: list[int] = []
    for i, part in enumerate(_MARK_RE.split(rendered)):
        if i % 2 == 0:
            out += tok.tokenize(part, special=True) if part else []
        elif part == "eos":
            out += [eos] if eos >= 0 else []
        else:
            out += contents[int(part)]
    return out


def _raise_template_error(message: str) -> None:
    raise jinja2.TemplateError(message)
