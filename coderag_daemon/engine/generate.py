"""The sampling loop: from the cache's current logits, one token at a time.

Cancellation and the time budget are checked before every token, so a cancelled request stops within
one token. Text is streamed as it becomes final: bytes of an incomplete UTF-8 character and text that
could still turn into a stop string are held back until they are decided.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .cache import ContextCache, ContextOverflowError

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


@dataclass
class Generation:
    text: str
    tokens: list[int]
    stop_reason: StopReason
    first_token_ms: float | None
    total_ms: float


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


def generate(
    cache: ContextCache,
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
    prompt's text that was left out of it)."""
    model = cache.model
    rng = np.random.default_rng(options.seed)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    t0 = time.perf_counter()
    deadline = t0 + options.time_budget_s if options.time_budget_s is not None else None
    logits = cache.logits()
    tokens: list[int] = []
    text, emitted, written = "", 0, b""
    first_ms: float | None = None
    reason: StopReason = "max_tokens"
    for _ in range(options.max_tokens):
        if cancelled is not None and cancelled():
            reason = "cancelled"
            break
        allowed = constrain(written) if constrain is not None else None
        token = pick_token(logits if allowed is None else _only(logits, allowed), options, rng)
        if first_ms is None:
            first_ms = (time.perf_counter() - t0) * 1000
        if model.is_end_of_generation(token) or token in options.stop_tokens:
            reason = "eog"
            break
        tokens.append(token)
        piece = model.token_bytes(token)
        written += piece
        text += decoder.decode(piece)
        cut = _first_stop(text, options.stop, max(0, emitted - max((len(s) for s in options.stop), default=0)))
        if cut is not None:
            text, reason = text[:cut], "stop"
            break
        if should_stop is not None and (keep := should_stop(text)) is not None:
            text, reason = text[: max(keep, emitted)], "predicate"  # streamed text stays sent
            break
        final = len(text) - _held_back(text, options.stop)
        if on_text is not None and final > emitted:
            on_text(text[emitted:final])
            emitted = final
        if deadline is not None and time.perf_counter() > deadline:
            reason = "time"
            break
        try:
            logits = cache.append(token)
        except ContextOverflowError:
            reason = "context_full"
            break
    if reason not in ("stop", "predicate"):
        text += decoder.decode(b"", final=True)
    if on_text is not None and len(text) > emitted:
        on_text(text[emitted:])
    return Generation(text, tokens, reason, first_ms, (time.perf_counter() - t0) * 1000)


def _only(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The logits with every token but the `allowed` ones ruled out."""
    masked = np.full_like(logits, -np.inf)
    masked[allowed] = logits[allowed]
    return masked


def _first_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    hits = [i for s in stops if (i := text.find(s, start)) >= 0]
    return min(hits) if hits else None
