"""Two sequences over one unified KV cache: a completion and a chat over the same files each keep
their own tail, share the prefix's cells, and stay equal to a fresh evaluation.

Only where truncation is exact (dense, full-size sliding-window cache); checkpoint strategies keep
one sequence and treat every `seq` as that one.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from coderag_daemon.engine import ContextCache, GenerationOptions, Model, generate
from fixtures.tiny_models import tiny_model_path

from .conftest import make_segments, options
from .test_exactness import TOLERANCE, Segments, edit, first_difference, flat

TWO_SEQUENCES = [("dense", {}), ("swa", {"swa_mode": "full"})]


@pytest.fixture(params=TWO_SEQUENCES, ids=[k for k, _ in TWO_SEQUENCES])
def model_and_options(request: pytest.FixtureRequest) -> tuple[Model, dict]:
    kind, overrides = request.param
    return Model(tiny_model_path(kind)), overrides


def fresh(model: Model, overrides: dict, segments: Segments) -> ContextCache:
    cache = ContextCache(model, options(**overrides))
    cache.update(segments)
    return cache


def diff(cache: ContextCache, model: Model, overrides: dict, segments: Segments) -> float:
    return float(np.abs(cache.logits() - fresh(model, overrides, segments).logits()).max())


def test_switching_between_two_targets_decodes_only_what_changed(model_and_options, source_texts: list[str]) -> None:
    model, overrides = model_and_options
    rng = random.Random(11)
    files = make_segments(model, source_texts, rng, n_segments=5)
    window = model.tokenize("\n# cursor window\n")
    completion = [*files[:4], window + files[4][:60]]  # the edited file left out, its window in the tail
    chat = [*files, model.tokenize("\nWhat does the decoder do?\n")]  # every file, then the question
    cache = ContextCache(model, options(**overrides))
    assert cache.n_seq == 2

    cache.update(completion, seq=0)
    first_chat = cache.update(chat, seq=1)
    shared = len(flat(files[:4]))
    assert (first_chat.restore_kind, first_chat.restored_from) == ("shared", shared), first_chat
    assert first_chat.tokens_reprocessed == len(flat(chat)) - shared
    assert cache.cells_used == len(flat(completion)) + len(flat(chat)) - shared
    assert diff(cache, model, overrides, chat) <= TOLERANCE
    answer = generate(cache, GenerationOptions(max_tokens=6)).tokens

    back = cache.update(completion, seq=0)
    assert back.tokens_reprocessed == 0, back
    assert diff(cache, model, overrides, completion) <= TOLERANCE
    typed = cache.update([*files[:4], window + files[4][:64]], seq=0)
    assert typed.tokens_reprocessed == 4, typed

    follow_up = [*chat, answer, model.tokenize("\nAnd the encoder?\n")]
    again = cache.update(follow_up, seq=1)
    # the answer's tokens were decoded while generating: only the new question is
    assert again.tokens_reprocessed == len(flat(follow_up)) - len(flat(chat)) - len(answer), again
    assert diff(cache, model, overrides, follow_up) <= TOLERANCE

    cache.drop(1)  # its cells are freed, the completion's moved to the front of the cache
    assert cache.cells_used == len(flat(completion)) + 4
    typed_more = [*files[:4], window + files[4][:70]]
    assert cache.update(typed_more, seq=0).tokens_reprocessed == 6
    assert diff(cache, model, overrides, typed_more) <= TOLERANCE
    assert cache.update(follow_up, seq=1).restored_from == shared
    assert diff(cache, model, overrides, follow_up) <= TOLERANCE


FILE_OPS = [
    "insert_inside",
    "move_to_tail",
    "unchanged",
    "at_end",
    "delete_inside",
    "remove_segment",
    "replace_inside",
    "at_boundary",
]
TAIL_OPS = ["tail_insert", "tail_replace", "tail_cut", "tail_grow", "unchanged"]


def edit_tail(tail: list[int], pool: list[int], rng: random.Random, op: str) -> list[int]:
    """Apply one named edit inside a request tail; it stays longer than the 32-token window."""
    tail = list(tail)
    chunk = pool[(at := rng.randrange(len(pool) - 60)) : at + rng.randint(1, 60)]
    if op == "tail_insert":
        at = rng.randrange(1, len(tail))
        tail[at:at] = chunk[:12]
    elif op == "tail_replace":
        at = rng.randrange(1, len(tail) - 3)
        tail[at : at + 3] = chunk[:4]
    elif op == "tail_cut":
        del tail[max(len(tail) * 2 // 3, 40) :]
    elif op == "tail_grow":
        tail.extend(chunk)
    elif op != "unchanged":
        raise ValueError(op)
    return tail


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edits_on_two_sequences_match_fresh_evaluation(
    model_and_options, source_texts: list[str], seed: int
) -> None:
    """Tails longer than the sliding window: one sequence's decode reaches past the other's window,
    where llama.cpp would reuse that one's cells. The update keeps what `reusable` said."""
    model, overrides = model_and_options
    rng = random.Random(seed)
    files = make_segments(model, source_texts, rng, n_segments=4, size=160)
    pool = flat(make_segments(model, source_texts[4:], rng, n_segments=3))
    tails = [pool[: rng.randint(80, 240)], pool[300 : 300 + rng.randint(80, 240)]]
    cache = ContextCache(model, options(**overrides))
    for _ in range(16):
        seq = rng.randrange(2)
        if rng.random() < 0.25:
            op = rng.choice(FILE_OPS)
            files = edit(files, rng, op)
        else:
            op = rng.choice(TAIL_OPS)
            tails[seq] = edit_tail(tails[seq], pool, rng, op)
        target = [*files, tails[seq]]
        kept = cache.reusable(target, seq)
        stats = cache.update(target, seq=seq)
        assert diff(cache, model, overrides, target) <= TOLERANCE, (op, seq, stats)
        assert stats.restored_from == kept, (op, seq, stats)
        if rng.random() < 0.5:
            generate(cache, GenerationOptions(max_tokens=3))


def test_the_other_sequence_makes_room_when_both_do_not_fit(model_and_options, source_texts: list[str]) -> None:
    model, overrides = model_and_options
    rng = random.Random(12)
    files = make_segments(model, source_texts, rng, n_segments=6, size=200)
    cache = ContextCache(model, options(**overrides, n_ctx=1536))
    first = files
    second = [*files[:3], *make_segments(model, source_texts[3:], rng, n_segments=3, size=200)]
    n1, n2, common = len(flat(first)), len(flat(second)), first_difference(flat(first), flat(second))
    assert n1 <= 1536 and n2 <= 1536 < n1 + n2 - common  # each fits alone, not both
    cache.update(first, seq=0)
    stats = cache.update(second, seq=1)
    assert stats.restore_kind == "shared" and cache.cells_used == n2
    assert diff(cache, model, overrides, second) <= TOLERANCE
    back = cache.update(first, seq=0)  # the first sequence was dropped: its prefix comes from the second
    assert (back.restore_kind, back.tokens_reprocessed) == ("shared", n1 - common), back
    assert diff(cache, model, overrides, first) <= TOLERANCE
    assert (
        generate(cache, GenerationOptions(max_tokens=8)).tokens
        == generate(fresh(model, overrides, first), GenerationOptions(max_tokens=8)).tokens
    )


@pytest.mark.parametrize("kind", ["swa", "recurrent", "hybrid"])
def test_checkpoint_strategies_keep_one_sequence(kind: str, source_texts: list[str]) -> None:
    model = Model(tiny_model_path(kind))
    cache = ContextCache(model, options())  # a small sliding-window cache: checkpoints
    assert cache.n_seq == 1
    rng = random.Random(13)
    files = make_segments(model, source_texts, rng)
    cache.update(files, seq=0)
    tail = model.tokenize("\nQuestion?\n")
    stats = cache.update([*files, tail], seq=1)  # the same sequence: only the tail is new
    assert stats.tokens_reprocessed == len(tail), stats
    assert diff(cache, model, {}, [*files, tail]) <= TOLERANCE
