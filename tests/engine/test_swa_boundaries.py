"""Sliding-window caches cut and share exactly where the window is held, and nowhere else.

llama.cpp masks position p0 from p1 when p1 - p0 >= n_swa, so the first token decoded at p attends
to p - n_swa + 1 .. p - 1: a cut at p is exact only when the sequence's sliding-window cells start
at or before p - n_swa + 1. The sweeps edit at pos_min + k for k around n_swa and end the target
one token after the edit, so that token's attention decides the logits: one window cell missing
moves them by ~0.1-0.5, thousands of times the tolerance.

With a full-size SWA cache and two sequences, llama.cpp hands a cell that fell out of one
sequence's window to the other sequence's tokens and drops the first one's positions up to it; the
engine pins every cell so that this never happens, and still checks the window before a cut or a
shared prefix in case cells are lost anyway (the sweep on two sequences takes the pins away).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import llama_cpp
import numpy as np
import pytest

from coderag_daemon.engine import ContextCache, Model
from coderag_daemon.engine.cache import _Sequence
from fixtures.tiny_models import tiny_model_path

from .conftest import make_segments, options
from .test_exactness import TOLERANCE, Segments, flat

FULL = {"swa_mode": "full"}
KS = range(-4, 5)
"""Edits at pos_min + n_swa + k."""


@pytest.fixture(scope="module")
def model() -> Model:
    return Model(tiny_model_path("swa"))


@pytest.fixture(scope="module")
def files(model: Model, source_texts: list[str]) -> Segments:
    return make_segments(model, source_texts, random.Random(31), n_segments=3)


@pytest.fixture(scope="module")
def pool(model: Model, source_texts: list[str]) -> list[int]:
    """Tokens for request tails, from files not in the context."""
    return flat(make_segments(model, source_texts[3:], random.Random(32), n_segments=3))


def pos_min(cache: ContextCache, seq: int) -> int:
    return llama_cpp.llama_memory_seq_pos_min(cache.memory, seq)


def diff(cache: ContextCache, model: Model, overrides: dict, segments: Segments) -> float:
    fresh = ContextCache(model, options(**overrides))
    fresh.update(segments)
    return float(np.abs(cache.logits() - fresh.logits()).max())


def other_token(tokens: list[int], at: int) -> int:
    return 300 if tokens[at] != 300 else 301


def unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the pins away: one sequence's decode then evicts the other's early window cells."""
    monkeypatch.setattr(ContextCache, "_ids", lambda self, s: (s.id,))


def shift_rule(monkeypatch: pytest.MonkeyPatch, by: int) -> None:
    """The window rule moved by `by` positions (positive: looser)."""

    def holds_window(self: ContextCache, s: _Sequence, p: int) -> bool:
        low = llama_cpp.llama_memory_seq_pos_min(self.memory, s.id)
        return p <= 0 or 0 <= low <= max(0, p - self.model.n_swa + 1 + by)

    monkeypatch.setattr(ContextCache, "_holds_window", holds_window)


# --- the sweeps ------------------------------------------------------------------------------------


def sweep_checkpoints(model: Model, files: Segments) -> Iterator[tuple[int, str, float]]:
    """One sequence with the small sliding-window cache: (k, restore kind, logit difference)."""
    tokens = flat(files)
    for k in KS:
        cache = ContextCache(model, options())
        cache.update(files)
        p = pos_min(cache, 0) + model.n_swa + k
        target = [tokens[:p] + [other_token(tokens, p)]]
        stats = cache.update(target)
        assert stats.first_changed == p
        yield k, stats.restore_kind, diff(cache, model, {}, target)


def sweep_two_sequences(model: Model, files: Segments, pool: list[int]) -> Iterator[tuple[int, str, float]]:
    """Two sequences with a full-size cache, the second's window cells evicted by the first's decode."""
    n_files = len(flat(files))
    for k in KS:
        cache = ContextCache(model, options(**FULL))
        cache.update([*files, pool[:10]], seq=0)
        chat = pool[20:220]
        cache.update([*files, chat], seq=1)
        cache.update([*files, pool[300:400]], seq=0)
        low = pos_min(cache, 1)
        assert low > n_files, "the first sequence's decode left the second's cells alone"
        p = low + model.n_swa + k
        tail = chat[: p - n_files]
        target = [*files, tail + [other_token(chat, p - n_files)]]
        stats = cache.update(target, seq=1)
        assert stats.first_changed == p
        # where the cut is not exact, the files come from the first sequence
        assert stats.restore_kind == "truncate" or stats.restored_from == n_files, stats
        yield k, stats.restore_kind, diff(cache, model, FULL, target)


def test_a_small_window_cache_cuts_exactly_where_the_window_is_held(model: Model, files: Segments) -> None:
    for k, kind, d in sweep_checkpoints(model, files):
        assert d <= TOLERANCE, (k, kind, d)
        assert kind == ("truncate" if k >= -1 else "checkpoint"), (k, kind)


def test_two_sequences_cut_exactly_where_the_window_is_held(
    model: Model, files: Segments, pool: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    unpinned(monkeypatch)
    for k, kind, d in sweep_two_sequences(model, files, pool):
        assert d <= TOLERANCE, (k, kind, d)
        assert kind == ("truncate" if k >= -1 else "shared"), (k, kind)


@pytest.mark.parametrize("case", ["checkpoints", "two sequences"])
def test_control_a_rule_one_position_looser_is_caught(
    case: str, model: Model, files: Segments, pool: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    shift_rule(monkeypatch, 1)
    if case == "checkpoints":
        results = list(sweep_checkpoints(model, files))
    else:
        unpinned(monkeypatch)
        results = list(sweep_two_sequences(model, files, pool))
    wrong = {k: d for k, kind, d in results if kind == "truncate" and d > 10 * TOLERANCE}
    assert list(wrong) == [-2], results  # the one newly allowed cut, and only it, is wrong


# --- the pins --------------------------------------------------------------------------------------


def evicting_session(model: Model, files: Segments, pool: list[int]) -> ContextCache:
    """Sequence 0 with a short tail, sequence 1 with one far longer than the window, then sequence 0
    with another tail of 100 tokens: its cells land on the second sequence's old tail cells."""
    cache = ContextCache(model, options(**FULL))
    cache.update([*files, pool[:10]], seq=0)
    cache.update([*files, pool[20:220]], seq=1)
    cache.update([*files, pool[300:400]], seq=0)
    return cache


@pytest.mark.parametrize("case", ["edit in the tail", "edit in the last file", "tail shared"])
def test_one_sequence_does_not_evict_the_others_window(
    case: str, model: Model, files: Segments, pool: list[int]
) -> None:
    cache = evicting_session(model, files, pool)
    n_files = len(flat(files))
    if case == "edit in the tail":
        tail = pool[20:240]
        tail[20] = other_token(tail, 20)
        target, seq, expected = [*files, tail], 1, ("truncate", n_files + 20)
    elif case == "edit in the last file":
        edited = [list(s) for s in files]
        edited[-1][-30] = other_token(edited[-1], len(edited[-1]) - 30)
        target, seq, expected = [*edited, pool[20:220]], 1, ("truncate", n_files - 30)
    else:
        target, seq, expected = [*files, pool[20:80]], 0, ("shared", n_files + 59)
    stats = cache.update(target, seq=seq)
    assert (stats.restore_kind, stats.restored_from) == expected, stats
    assert diff(cache, model, FULL, target) <= TOLERANCE
