"""Speculative decoding by prompt lookup gives what decoding one token at a time gives.

On the tiny dense model and the tiny sliding-window model with a full-size SWA cache, prompts repeat
code from their context, so drafts are found and partly rejected. With speculation on and off the
tokens, the streamed text, the stop reason, the tokens the cache holds and its logits are equal,
also when the generation stops in the middle of an accepted draft (stop string, stop token,
predicate, cancellation, max_tokens, a full context); the next update from there equals a fresh
evaluation. Where a draft cannot be cut back exactly (recurrent, hybrid, a small sliding-window
cache) speculation is off.
"""

from __future__ import annotations

import codecs
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from coderag_daemon.engine import ContextCache, Generation, GenerationOptions, Model, generate
from coderag_daemon.engine.generate import _Lookup
from fixtures.tiny_models import tiny_model_path

from .conftest import options

TOLERANCE = 1e-4
"""Logits of a batch against one token at a time: the same sums in another order (f32 KV cache)."""
MAX_TOKENS = 40
CUT_BACK = [("dense", "checkpoints"), ("swa", "full")]


@pytest.fixture(scope="module", params=CUT_BACK, ids=[k for k, _ in CUT_BACK])
def setup(request: pytest.FixtureRequest) -> tuple[Model, dict[str, Any]]:
    kind, swa_mode = request.param
    return Model(tiny_model_path(kind)), {"swa_mode": swa_mode}


def prompts(model: Model, texts: list[str], count: int, seed: int = 0) -> list[list[int]]:
    """A file, then the start of a piece of it written again: the model's next tokens are often
    the file's, so prompt lookup finds drafts, and random weights make it stray from them too."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        tokens = model.tokenize(texts[i % len(texts)])[:300]
        at = rng.randrange(30, 250)
        out.append(tokens + tokens[at : at + rng.randint(3, 30)])
    return out


@dataclass
class Spy:
    """Records a cache's draft batches and cut-backs: (position, tokens) and (from, to)."""

    cache: ContextCache
    batches: list[tuple[int, list[int]]] = field(default_factory=list)
    cuts: list[tuple[int, int, list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        append_many, cut_back = type(self.cache).append_many, type(self.cache).cut_back

        def spy_append_many(tokens: Sequence[int]) -> np.ndarray:
            self.batches.append((len(self.cache.tokens), list(tokens)))
            return append_many(self.cache, tokens)

        def spy_cut_back(n: int, logits: np.ndarray) -> None:
            self.cuts.append((len(self.cache.tokens), n, self.cache.tokens[n:]))
            cut_back(self.cache, n, logits)

        self.cache.append_many = spy_append_many  # type: ignore[method-assign]
        self.cache.cut_back = spy_cut_back  # type: ignore[method-assign]

    def mid_draft(self, base: int, tokens: list[int]) -> list[int]:
        """Indices of generated tokens taken from a draft that went on after them."""
        out = []
        for pos, batch in self.batches:
            first = pos - base  # index of the generated token the draft follows
            for m, drafted in enumerate(batch[1:-1], 1):
                if first + m >= len(tokens) or tokens[first + m] != drafted:
                    break
                out.append(first + m)
        return out


@dataclass
class Run:
    gen: Generation
    pieces: list[str]
    tokens: list[int]
    logits: np.ndarray
    cache: ContextCache


def run(
    model: Model,
    overrides: dict[str, Any],
    prompt: list[int],
    speculative: bool,
    *,
    other: list[int] | None = None,
    cancel_at: int | None = None,
    predicate_at: int | None = None,
    constrain: Callable[[bytes], np.ndarray | None] | None = None,
    spy: bool = False,
    **gen_options: Any,
) -> tuple[Run, Spy | None]:
    """Generate after `prompt` on an emptied cache (sequence 1 holding `other` first, when given)."""
    cache = _cache(model, tuple(sorted(overrides.items())))
    cache.clear()
    if other is not None:
        cache.update([other], seq=1)
    cache.update([prompt])
    vars(cache).pop("append_many", None)  # a spy of an earlier run
    vars(cache).pop("cut_back", None)
    watch = Spy(cache) if spy else None
    pieces: list[str] = []
    checks = {"cancel": 0, "predicate": 0}

    def cancelled() -> bool:
        checks["cancel"] += 1
        return checks["cancel"] > (cancel_at if cancel_at is not None else 1 << 30)

    def should_stop(text: str) -> int | None:
        checks["predicate"] += 1
        return max(0, len(text) - 1) if checks["predicate"] - 1 == predicate_at else None

    gen = generate(
        cache,
        GenerationOptions(**{"max_tokens": MAX_TOKENS, "speculative": speculative, **gen_options}),
        cancelled=cancelled,
        on_text=pieces.append,
        should_stop=should_stop,
        constrain=constrain,
    )
    return Run(gen, pieces, list(cache.tokens), cache.logits().copy(), cache), watch


@functools.cache
def _cache(model: Model, overrides: tuple[tuple[str, Any], ...]) -> ContextCache:
    """One cache per model and settings (a context with a full-size SWA cache takes a while to make)."""
    return ContextCache(model, options(**dict(overrides)))


def assert_same(spec: Run, plain: Run) -> None:
    assert spec.gen.tokens == plain.gen.tokens
    assert spec.gen.text == plain.gen.text
    assert spec.pieces == plain.pieces
    assert spec.gen.stop_reason == plain.gen.stop_reason
    assert spec.tokens == plain.tokens
    assert np.abs(spec.logits - plain.logits).max() < TOLERANCE
    assert plain.gen.draft_tokens == plain.gen.accepted_tokens == 0
    assert spec.gen.forward_passes + spec.gen.accepted_tokens == plain.gen.forward_passes


def test_the_same_tokens_in_fewer_forward_passes(setup: tuple[Model, dict[str, Any]], source_texts: list[str]) -> None:
    model, overrides = setup
    drafted = accepted = passes = plain_passes = 0
    for prompt in prompts(model, source_texts, 8):
        spec, _ = run(model, overrides, prompt, True)
        plain, _ = run(model, overrides, prompt, False)
        assert_same(spec, plain)
        drafted += spec.gen.draft_tokens
        accepted += spec.gen.accepted_tokens
        passes += spec.gen.forward_passes
        plain_passes += plain.gen.forward_passes
    assert 0 < accepted < drafted  # drafts found, partly rejected
    assert passes < plain_passes


@pytest.mark.parametrize("stop", ["predicate", "stop_string", "stop_token", "cancelled"])
def test_a_stop_inside_an_accepted_draft(
    setup: tuple[Model, dict[str, Any]], source_texts: list[str], stop: str
) -> None:
    """The generation ends at a token taken from a draft that went on after it: the cache is cut
    back to where one token at a time leaves it."""
    model, overrides = setup
    checked = 0
    for i, prompt in enumerate(prompts(model, source_texts, 8, seed=1)):
        # with its own first tokens, the model's loop is in the prompt: drafts from its first token on
        prompt = prompt + run(model, overrides, prompt, False)[0].gen.tokens[:20]
        free, spy = run(model, overrides, prompt, True, spy=True)
        assert spy is not None
        tokens = free.gen.tokens
        base = len(prompt)
        for j in spy.mid_draft(base, tokens):
            if checked >= 2 * (i + 1):  # a few per prompt
                break
            kwargs: dict[str, Any] = {}
            if stop == "predicate":
                kwargs["predicate_at"] = j
            elif stop == "cancelled":
                kwargs["cancel_at"] = j
            elif stop == "stop_token":
                if tokens[j] in tokens[:j]:
                    continue
                kwargs["stop_tokens"] = frozenset({tokens[j]})
            else:
                text, before = _text(model, tokens[: j + 1]), _text(model, tokens[:j])
                if len(text) == len(before):
                    continue
                # the shortest end of the text that first occurs with token j
                kwargs["stop"] = (next(text[-n:] for n in range(1, len(text) + 1) if text[-n:] not in text[:-1]),)
            spec, watch = run(model, overrides, prompt, True, spy=True, **kwargs)
            plain, _ = run(model, overrides, prompt, False, **kwargs)
            assert_same(spec, plain)
            assert spec.gen.stop_reason == {"stop_string": "stop", "stop_token": "eog"}.get(stop, stop)
            assert watch is not None and watch.cuts, "the generation stopped inside a draft"
            _, to, removed = watch.cuts[-1]
            assert to == base + j and len(removed) >= 2 and removed[0] == tokens[j]
            checked += 1
    assert checked >= 2


def _text(model: Model, tokens: list[int]) -> str:
    """The text generation has after `tokens` (an incomplete character held back)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    return "".join(decoder.decode(model.token_bytes(t)) for t in tokens)


def test_max_tokens_reached_in_a_draft(setup: tuple[Model, dict[str, Any]], source_texts: list[str]) -> None:
    """The last tokens come from a draft, which never reaches past them."""
    model, overrides = setup
    prompt = prompts(model, source_texts, 1, seed=2)[0]
    ends_in_draft = 0
    for max_tokens in range(1, 25):
        spec, spy = run(model, overrides, prompt, True, spy=True, max_tokens=max_tokens)
        plain, _ = run(model, overrides, prompt, False, max_tokens=max_tokens)
        assert_same(spec, plain)
        assert spy is not None and all(pos + len(batch) <= len(prompt) + max_tokens for pos, batch in spy.batches)
        ends_in_draft += spec.gen.forward_passes < max_tokens
    assert ends_in_draft > 0


def test_the_first_tokens_held_by_constrain(setup: tuple[Model, dict[str, Any]], source_texts: list[str]) -> None:
    """Drafts are checked against the choice among the allowed tokens."""
    model, overrides = setup
    for prompt in prompts(model, source_texts, 3, seed=3):
        free, _ = run(model, overrides, prompt, False)
        allowed = np.array(sorted({*free.gen.tokens[:3], *prompt[-5:]}))

        def constrain(written: bytes, allowed: np.ndarray = allowed) -> np.ndarray | None:
            return allowed if len(written) < 6 else None

        spec, _ = run(model, overrides, prompt, True, constrain=constrain)
        plain, _ = run(model, overrides, prompt, False, constrain=constrain)
        assert_same(spec, plain)


def test_a_full_context_beside_the_other_sequence(setup: tuple[Model, dict[str, Any]], source_texts: list[str]) -> None:
    """Drafts take only free cells: the context fills up at the same token, and the other sequence
    is dropped only when one token at a time drops it."""
    model, overrides = setup
    prompt = prompts(model, source_texts, 1, seed=4)[0]
    other = model.tokenize(source_texts[-1])[:300]
    overrides = {**overrides, "n_ctx": 1024}
    cases = [(None, room, 400) for room in (3, 7, 12)] + [(other, 12, 12), (other, 12, 400)]
    for other_seq, room, max_tokens in cases:
        free = 1024 - len(prompt) - room - (0 if other_seq is None else len(other_seq))
        long_prompt = model.tokenize(source_texts[1])[:free] + prompt
        spec, _ = run(model, overrides, long_prompt, True, other=other_seq, max_tokens=max_tokens)
        plain, _ = run(model, overrides, long_prompt, False, other=other_seq, max_tokens=max_tokens)
        assert_same(spec, plain)
        assert spec.gen.stop_reason == ("context_full" if max_tokens > room else "max_tokens"), spec.gen
        held = [r.cache.cached_prefix([other], seq=1) for r in (spec, plain)]
        assert held == [len(other) if other_seq is not None and max_tokens <= room else 0] * 2
        assert spec.cache.cells_used == plain.cache.cells_used


def test_the_next_update_is_exact(setup: tuple[Model, dict[str, Any]], source_texts: list[str]) -> None:
    """From the cache a speculative generation leaves, an update back to the context costs nothing
    and one that keeps some generated tokens equals a fresh evaluation."""
    model, overrides = setup
    for prompt in prompts(model, source_texts, 3, seed=5):
        spec, _ = run(model, overrides, prompt, True)
        cache = spec.cache
        assert spec.gen.accepted_tokens > 0
        back = cache.update([prompt])
        assert back.tokens_reprocessed == 0
        assert np.abs(cache.logits() - fresh(model, overrides, prompt)).max() < TOLERANCE
        assert generate(cache, GenerationOptions(max_tokens=MAX_TOKENS)).tokens == spec.gen.tokens
        target = prompt + spec.gen.tokens[: len(spec.gen.tokens) // 2] + prompt[10:20]
        stats = cache.update([target])
        assert stats.restored_from == len(prompt) + len(spec.gen.tokens) // 2
        assert np.abs(cache.logits() - fresh(model, overrides, target)).max() < TOLERANCE


def fresh(model: Model, overrides: dict[str, Any], target: list[int]) -> np.ndarray:
    cache = ContextCache(model, options(**overrides))
    cache.update([target])
    return cache.logits()


@pytest.mark.parametrize(("kind", "swa_mode"), [("recurrent", "auto"), ("hybrid", "auto"), ("swa", "checkpoints")])
def test_off_where_a_draft_cannot_be_cut_back(kind: str, swa_mode: str, source_texts: list[str]) -> None:
    model = Model(tiny_model_path(kind))
    for prompt in prompts(model, source_texts, 2, seed=6):
        spec, _ = run(model, {"swa_mode": swa_mode}, prompt, True)
        plain, _ = run(model, {"swa_mode": swa_mode}, prompt, False)
        assert spec.gen.draft_tokens == 0
        assert_same(spec, plain)


def test_off_when_sampling(source_texts: list[str]) -> None:
    model = Model(tiny_model_path("dense"))
    prompt = prompts(model, source_texts, 1)[0]
    sampled, _ = run(model, {}, prompt, True, temperature=0.8, seed=3)
    assert sampled.gen.draft_tokens == 0 and sampled.gen.forward_passes == len(sampled.gen.tokens)


def test_lookup_takes_the_longest_ngram_at_its_latest_occurrence() -> None:
    #         0  1  2  3  4  5  6  7  8  9 10 11 12
    context = [1, 2, 3, 9, 9, 5, 2, 3, 7, 7, 2, 3, 8]
    lookup = _Lookup(context, 4, (3, 2, 1))
    lookup.push(5)
    lookup.push(2)
    lookup.push(3)  # ... 5 2 3: the 3-gram at 5..7
    assert lookup.draft(3) == [7, 7, 2]
    assert lookup.draft(1) == [7]
    assert _Lookup(context, 1, (2, 1)).draft(2) == []  # 3 8: no earlier 8
    two = _Lookup([*context, 4, 2, 3], 0, (2, 1))
    assert two.draft(2) == [8, 4]  # 2 3: the latest occurrence, at 10..11
    assert _Lookup([4, 1, 4], 0, (3,)).draft(2) == []  # no 3-gram before the end
    assert _Lookup([4, 1, 4], 0, (3, 1)).draft(5) == [1, 4]
