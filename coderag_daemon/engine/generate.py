"""The sampling loop: from the cache's current logits, one token at a time.

Cancellation and the time budget are checked before every token, so a cancelled request stops within
one token. Text is streamed as it becomes final: bytes of an incomplete UTF-8 character and text that
could still turn into a stop string are held back until they are decided.

Greedy decoding is speculative where the cache can cut tokens back exactly: tokens found by prompt
lookup (`_Lookup`) are decoded together with the last generated one, and each is taken while it is
the model's own choice; the rest of the draft is cut off. Every token, drafted or not, goes through
the same checks in the same order, so the tokens, the text and the cache are those of one token at a
time, in fewer forward passes.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from .cache import ContextCache, ContextOverflowError

if TYPE_CHECKING:
    from .remote.cache import RemoteContext

StopReason = Literal["eog", "stop", "predicate", "max_tokens", "cancelled", "time", "context_full"]


@dataclass
class GenerationOptions:
    max_tokens: int = 128
    temperature: float = 0.0
    """0 = greedy (deterministic); above 0, sampled with top-k / top-p."""
    top_k: int = 40
    top_p: float = 0.95
    seed: int = 0
    stop: tuple[str, ...] = ()
    """Strings that end the generation; they are not part of the result."""
    stop_tokens: frozenset[int] = field(default_factory=frozenset)
    """Token ids that end the generation besides the model's own end-of-generation tokens."""
    time_budget_s: float | None = None
    speculative: bool = False
    """Greedy decoding checks drafts found by prompt lookup: the same tokens in fewer forward passes.
    Ignored when sampling, off where the cache cannot cut a rejected draft back exactly
    (`ContextCache.can_cut_back`: recurrent and hybrid models, a small sliding-window cache). Off by
    default: on a quantized model a draft's batch rounds logits differently and decides near-ties,
    and poor drafts cost more passes than they save (docs/ENGINE.md)."""
    draft_max: int = 10
    """Most draft tokens decoded with a generated one: a longer draft costs more when it is rejected."""
    draft_ngrams: tuple[int, ...] = (3, 2, 1)
    """How many of the last tokens are looked up earlier in the sequence; the longest that occurs wins."""

    def __post_init__(self) -> None:
        if self.draft_max < 0 or any(n < 1 for n in self.draft_ngrams):
            raise ValueError(f"draft_max {self.draft_max} and draft_ngrams {self.draft_ngrams} must not be negative")


@dataclass
class Generation:
    text: str
    tokens: list[int]
    stop_reason: StopReason
    first_token_ms: float | None
    total_ms: float
    forward_passes: int = 0
    """Decode calls: one per generated token that the next one was picked after, less those taken
    from a draft."""
    draft_tokens: int = 0
    """Tokens decoded on a guess."""
    accepted_tokens: int = 0
    """Of them, those the model picked itself and generation went past (no forward pass of their own)."""


def pick_token(logits: np.ndarray, options: GenerationOptions, rng: np.random.Generator) -> int:
    if options.temperature <= 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / options.temperature
    k = min(options.top_k, scaled.size) if options.top_k > 0 else scaled.size
    candidates = np.argpartition(scaled, -k)[-k:]
    order = candidates[np.argsort(scaled[candidates])[::-1]]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    keep = int(np.searchsorted(np.cumsum(probs), options.top_p) + 1)
    probs = probs[:keep] / probs[:keep].sum()
    return int(order[rng.choice(keep, p=probs)])


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


class GeneratedText:
    """Generated tokens made text, and the checks that end a generation on what it says: the end of
    generation, a stop token or string, the caller's predicate. Text is handed to `on_text` once it
    is final (not part of a UTF-8 character or of a possible stop string still being written). The
    local sampling loop and the remote engine feed it the same way, so both end where the other would."""

    def __init__(
        self,
        model: Tokens,
        options: GenerationOptions,
        on_text: Callable[[str], None] | None = None,
        should_stop: Callable[[str], int | None] | None = None,
    ) -> None:
        self._model, self._options, self._on_text, self._should_stop = model, options, on_text, should_stop
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._longest_stop = max((len(s) for s in options.stop), default=0)
        self.tokens: list[int] = []
        self.text = ""
        self.written = b""
        self._emitted = 0

    def add(self, token: int) -> StopReason | None:
        """Take one generated token; the reason to stop before or after it, or None to go on."""
        if self._model.is_end_of_generation(token) or token in self._options.stop_tokens:
            return "eog"
        self.tokens.append(token)
        return self.add_bytes(self._model.token_bytes(token))

    def add_bytes(self, piece: bytes) -> StopReason | None:
        """Take generated text whose tokens are not known (a server that answers in text)."""
        self.written += piece
        self.text += self._decoder.decode(piece)
        stops = self._options.stop
        cut = _first_stop(self.text, stops, max(0, self._emitted - self._longest_stop))
        if cut is not None:
            self.text = self.text[:cut]
            return "stop"
        if self._should_stop is not None and (keep := self._should_stop(self.text)) is not None:
            self.text = self.text[: max(keep, self._emitted)]  # streamed text stays sent
            return "predicate"
        final = len(self.text) - _held_back(self.text, stops)
        if self._on_text is not None and final > self._emitted:
            self._on_text(self.text[self._emitted : final])
            self._emitted = final
        return None

    def finish(self, reason: StopReason) -> str:
        """The generation ended for `reason`: the text held back goes out; the whole text."""
        if reason not in ("stop", "predicate"):
            self.text += self._decoder.decode(b"", final=True)
        if self._on_text is not None and len(self.text) > self._emitted:
            self._on_text(self.text[self._emitted :])
            self._emitted = len(self.text)
        return self.text


class Tokens(Protocol):
    """What generated text needs of a model: `Model`, or its vocabulary alone."""

    def is_end_of_generation(self, token: int) -> bool: ...

    def token_bytes(self, token: int) -> bytes: ...


def generate(
    cache: ContextCache | RemoteContext,
    options: GenerationOptions,
    *,
    cancelled: Callable[[], bool] | None = None,
    on_text: Callable[[str], None] | None = None,
    should_stop: Callable[[str], int | None] | None = None,
    constrain: Callable[[bytes], np.ndarray | None] | None = None,
) -> Generation:
    """Generate after the cache's last token. `should_stop(text)` may end it early by returning the
    length of text to keep (used for 'end of block' in completions). `constrain(bytes so far)` may
    name the only token ids allowed next (a completion's first tokens must retype the end of the
    prompt's text that was left out of it). A remote engine's context generates on its server."""
    if not isinstance(cache, ContextCache):
        return cache.generate(
            options, cancelled=cancelled, on_text=on_text, should_stop=should_stop, constrain=constrain
        )
    rng = np.random.default_rng(options.seed)
    t0 = time.perf_counter()
    deadline = t0 + options.time_budget_s if options.time_budget_s is not None else None
    logits = cache.logits()
    out = GeneratedText(cache.model, options, on_text, should_stop)
    first_ms: float | None = None
    reason: StopReason = "max_tokens"
    speculative = options.speculative and options.temperature <= 0 and options.draft_max > 0 and cache.can_cut_back
    lookup = _Lookup(cache.tokens, options.max_tokens, options.draft_ngrams) if speculative else None
    draft: list[int] = []
    """Tokens decoded after the last generated one on a guess; `rows` are the logits after each."""
    rows = np.empty((0, logits.size), logits.dtype)
    passes = drafted = accepted = 0
    for _ in range(options.max_tokens):
        if cancelled is not None and cancelled():
            reason = "cancelled"
            break
        allowed = constrain(out.written) if constrain is not None else None
        token = pick_token(logits if allowed is None else _only(logits, allowed), options, rng)
        if first_ms is None:
            first_ms = (time.perf_counter() - t0) * 1000
        if (stop := out.add(token)) is not None:
            reason = stop
            break
        if deadline is not None and time.perf_counter() > deadline:
            reason = "time"
            break
        if lookup is not None:
            lookup.push(token)
        if draft and token == draft[0]:  # decoded already, its logits too
            logits, rows, draft = rows[0], rows[1:], draft[1:]
            accepted += 1
            continue
        if draft:  # the model went another way: the rest of the draft goes
            cache.cut_back(len(cache.tokens) - len(draft), logits)
            draft = []
        guess: list[int] = []
        if lookup is not None:
            free = min(cache.n_ctx - cache.cells_used, cache.options.n_batch) - 1  # beside `token`
            guess = lookup.draft(min(options.draft_max, options.max_tokens - len(out.tokens), free))
        try:
            batch = cache.append_many([token, *guess]) if guess else cache.append(token)[None]
        except ContextOverflowError:
            reason = "context_full"
            break
        passes += 1
        drafted += len(guess)
        logits, rows, draft = batch[0], batch[1:], guess
    if draft:  # decoded past where the generation stopped
        cache.cut_back(len(cache.tokens) - len(draft), logits)
    text = out.finish(reason)
    return Generation(text, out.tokens, reason, first_ms, (time.perf_counter() - t0) * 1000, passes, drafted, accepted)


class _Lookup:
    """Drafts by prompt lookup: the tokens that followed the latest earlier occurrence of the
    sequence's last n tokens, for the longest n of `ngrams` that occurs. Code repeats itself (a call
    written again, names from the text after the cursor, a line like the one above), so the model
    often picks them; no second model is needed."""

    def __init__(self, context: list[int], room: int, ngrams: tuple[int, ...]) -> None:
        self._tokens = np.empty(len(context) + room, np.int64)
        self._tokens[: len(context)] = context
        self._n = len(context)
        self._ngrams = sorted(set(ngrams), reverse=True)

    def push(self, token: int) -> None:
        self._tokens[self._n] = token
        self._n += 1

    def draft(self, limit: int) -> list[int]:
        if limit <= 0 or self._n == 0:
            return []
        seq, last = self._tokens[: self._n], self._n - 1
        ends = np.flatnonzero(seq[:last] == seq[last])  # earlier occurrences of the last token
        for n in self._ngrams:
            match = ends[ends >= n - 1]
            for k in range(1, n):
                match = match[seq[match - k] == seq[last - k]]
            if match.size:
                start = int(match[-1]) + 1
                return [int(t) for t in seq[start : start + limit]]
        return []


def _only(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The logits with every token but the `allowed` ones ruled out."""
    masked = np.full_like(logits, -np.inf)
    masked[allowed] = logits[allowed]
    return masked


def _first_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    hits = [i for s in stops if (i := text.find(s, start)) >= 0]
    return min(hits) if hits else None
