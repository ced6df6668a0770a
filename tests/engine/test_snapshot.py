"""A saved cache loaded into a new context (a restarted daemon) continues exactly as the old one.

On every tiny model kind, and both sliding-window strategies: after `save_state` and `load_state` into a
new Model and ContextCache, the same target decodes nothing and its logits equal a fresh evaluation;
an edit made "while down" keeps the prefix (or restores a saved checkpoint) and decodes only from
there. Both sequences and their shared prefix survive. Damaged payloads, and payloads from a cache
with other settings, raise SnapshotError and leave the cache empty and usable.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from coderag_daemon.engine import ContextCache, Model, SnapshotError, snapshot
from fixtures.tiny_models import tiny_model_path

from .conftest import make_segments, options
from .test_exactness import TOLERANCE, Segments, first_difference, flat

SETUPS = [("dense", {}), ("swa", {}), ("swa", {"swa_mode": "full"}), ("recurrent", {}), ("hybrid", {})]
IDS = ["dense", "swa-checkpoints", "swa-full", "recurrent", "hybrid"]
TWO_SEQUENCES = [SETUPS[0], SETUPS[2]]
DAMAGE_SETUPS = [SETUPS[0], SETUPS[1], SETUPS[4]]


@pytest.fixture(params=SETUPS, ids=IDS)
def setup(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return request.param


def new_cache(kind: str, overrides: dict) -> ContextCache:
    """A cache over a newly loaded model, as after a restart."""
    return ContextCache(Model(tiny_model_path(kind)), options(**overrides))


def diff(cache: ContextCache, segments: Segments, seq: int = 0) -> float:
    fresh = ContextCache(cache.model, cache.options)
    fresh.update(segments, seq=seq)
    return float(np.abs(cache.logits() - fresh.logits()).max())


def saved_session(kind: str, overrides: dict, texts: list[str], seed: int) -> tuple[bytes, Segments, ContextCache]:
    """The payload of a cache updated to six segments, those segments, and the cache."""
    cache = new_cache(kind, overrides)
    segments = make_segments(cache.model, texts, random.Random(seed))
    cache.update(segments)
    return cache.save_state(), segments, cache


def test_a_loaded_cache_continues_exactly(setup: tuple[str, dict], source_texts: list[str]) -> None:
    kind, overrides = setup
    payload, segments, old = saved_session(kind, overrides, source_texts, seed=21)
    n = len(flat(segments))

    cache = new_cache(kind, overrides)
    assert cache.load_state(payload) == n == cache.cells_used
    assert cache.checkpoints.positions == old.checkpoints.positions
    again = cache.update(segments)
    assert (again.restore_kind, again.restored_from, again.tokens_reprocessed) == ("disk", n, 0), again
    assert diff(cache, segments) <= TOLERANCE
    assert cache.update(segments).restore_kind == "none"  # only the first update after the load

    # an edit made while the daemon was down, far behind the end (and the sliding-window cache)
    cache = new_cache(kind, overrides)
    cache.load_state(payload)
    edited = [list(s) for s in segments]
    edited[1][20] ^= 1
    p = first_difference(flat(segments), flat(edited))
    stats = cache.update(edited)
    assert stats.restore_kind == "disk" and stats.first_changed == p, stats
    if cache.uses_checkpoints:
        assert stats.restored_from in old.checkpoints.positions, stats
        assert p - stats.restored_from <= cache.options.checkpoint_interval, stats
    else:
        assert stats.restored_from == p, stats
    assert stats.tokens_reprocessed == n - stats.restored_from < n
    assert diff(cache, edited) <= TOLERANCE


def test_a_target_that_keeps_nothing_is_not_from_disk(setup: tuple[str, dict], source_texts: list[str]) -> None:
    kind, overrides = setup
    payload, segments, _ = saved_session(kind, overrides, source_texts, seed=22)
    cache = new_cache(kind, overrides)
    cache.load_state(payload)
    other = [[cache.model.special.bos] + segments[0][:5] + segments[2]]
    stats = cache.update(other)
    assert (stats.restore_kind, stats.restored_from) == ("reset", 0), stats


@pytest.mark.parametrize(("kind", "overrides"), TWO_SEQUENCES, ids=["dense", "swa-full"])
def test_both_sequences_and_their_shared_prefix_survive(kind: str, overrides: dict, source_texts: list[str]) -> None:
    old = new_cache(kind, overrides)
    files = make_segments(old.model, source_texts, random.Random(23), n_segments=5)
    completion = [*files[:4], old.model.tokenize("\n# cursor window\n") + files[4][:60]]
    chat = [*files, old.model.tokenize("\nWhat does the decoder do?\n")]
    old.update(completion, seq=0)
    old.update(chat, seq=1)
    payload = old.save_state()

    cache = new_cache(kind, overrides)
    assert cache.load_state(payload) == old.cells_used < len(flat(completion)) + len(flat(chat))
    assert cache.tokens == flat(chat)  # the sequence last updated stays the current one
    if cache._pinned:  # the pin sequences tag the same cells again
        memory = cache.memory
        for seq in (0, 1):
            ends = [
                (llama_cpp.llama_memory_seq_pos_min(memory, i), llama_cpp.llama_memory_seq_pos_max(memory, i))
                for i in (seq, seq + 2)
            ]
            assert ends[0] == ends[1] == (0, len(flat(chat if seq else completion)) - 1), ends
    for target, seq in ((completion, 0), (chat, 1)):
        stats = cache.update(target, seq=seq)
        assert (stats.restore_kind, stats.tokens_reprocessed) == ("disk", 0), stats
        assert diff(cache, target, seq) <= TOLERANCE
    follow_up = [*chat, old.model.tokenize("\nAnd the encoder?\n")]
    stats = cache.update(follow_up, seq=1)
    assert stats.tokens_reprocessed == len(flat(follow_up)) - len(flat(chat)), stats
    assert diff(cache, follow_up, 1) <= TOLERANCE


def _reencoded(payload: bytes, cache: ContextCache, change: Callable[[snapshot.CacheState], None]) -> bytes:
    """The payload with its decoded state changed and encoded again (a valid checksum)."""
    state = snapshot.decode(payload, snapshot.snapshot_key(cache))
    change(state)
    return snapshot.encode(state)


def _damaged(payload: bytes, cache: ContextCache) -> dict[str, bytes]:
    flipped = bytearray(payload)
    flipped[len(payload) // 2] ^= 0x10
    return {
        "empty": b"",
        "truncated": payload[: len(payload) - 100],
        "flipped byte": bytes(flipped),
        "not a snapshot": b"GGUF" + payload[4:],
        "llama.cpp refuses": _reencoded(payload, cache, lambda s: setattr(s, "llama_state", s.llama_state[:-64])),
        "a token llama.cpp does not hold": _reencoded(
            payload, cache, lambda s: setattr(s.sequences[0], "tokens", np.append(s.sequences[0].tokens, 7))
        ),
    }


@pytest.mark.parametrize(("kind", "overrides"), DAMAGE_SETUPS, ids=["dense", "swa-checkpoints", "hybrid"])
def test_a_bad_payload_is_refused_and_leaves_the_cache_usable(
    kind: str, overrides: dict, source_texts: list[str]
) -> None:
    payload, segments, _ = saved_session(kind, overrides, source_texts, seed=24)
    cache = new_cache(kind, overrides)
    other_n_ctx = new_cache(kind, {**overrides, "n_ctx": 2048})
    other_n_ctx.update(segments)
    bad = {**_damaged(payload, cache), "another n_ctx": other_n_ctx.save_state()}
    for name, data in bad.items():
        cache.update(segments)  # a loaded cache is replaced even when the payload is bad
        with pytest.raises(SnapshotError):
            cache.load_state(data)
        assert (cache.cells_used, cache.tokens, len(cache.checkpoints)) == (0, [], 0), name
        stats = cache.update(segments)
        assert (stats.restore_kind, stats.tokens_reprocessed) == ("none", len(flat(segments))), name
        assert diff(cache, segments) <= TOLERANCE, name
    with pytest.raises(SnapshotError, match="n_ctx 2048"):
        cache.load_state(bad["another n_ctx"])
    assert cache.load_state(payload) == len(flat(segments))  # the good one still loads after all that


def test_model_digest_hashes_a_file_once_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = []
    file_digest = hashlib.file_digest

    def counted(f: io.BufferedReader, name: str) -> hashlib._Hash:
        hashed.append(name)
        return file_digest(f, name)

    monkeypatch.setattr(hashlib, "file_digest", counted)
    path = tmp_path / "model.gguf"
    path.write_bytes(b"one")
    assert snapshot.model_digest(path) == snapshot.model_digest(str(path)) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two!")
    assert snapshot.model_digest(path) == hashlib.sha256(b"two!").hexdigest()
    assert hashed == ["sha256", "sha256"]
