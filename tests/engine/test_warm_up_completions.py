"""Completions while the context is still being decoded run beside the preload, on the other
sequence, and keep to the files they had: each decodes only what changed in its window, and the
preload's work is never cut off. Once the context is whole, completions go back to sequence 0."""

from __future__ import annotations

import random

from coderag_daemon.engine import ContextCache, Model
from coderag_daemon.worker.jobs import WARM_UP_SEQ, completion_context
from fixtures.tiny_models import tiny_model_path

from .conftest import make_segments, options


def _flat(segments: list[list[int]]) -> list[int]:
    return [t for s in segments for t in s]


def test_a_warm_up_keeps_its_files_and_decodes_only_the_changed_window(source_texts: list[str]) -> None:
    model = Model(tiny_model_path("dense"))
    cache = ContextCache(model, options())
    rng = random.Random(3)
    files = make_segments(model, source_texts, rng, n_segments=6, size=300)
    window = model.tokenize(source_texts[3])[:150]
    wait = 32
    # The preload has decoded the first file and a half when the first completion comes.
    cache.update([_flat(files)[:450]])
    seq, near, left_out = completion_context(cache, files, window, wait)
    assert seq == WARM_UP_SEQ and left_out > 0
    assert len(_flat(near)) == 450 + wait
    first = cache.update([*near, window], seq=seq)
    assert first.restore_kind == "shared" and first.tokens_kept == 450
    # The preload goes on (sequence 0) while the user types; the window changes at its end.
    cache.update([_flat(files)[:1200]])
    typed = [*window[:-5], *model.tokenize(" x = 1")]
    seq, again, _ = completion_context(cache, files, typed, wait)
    assert seq == WARM_UP_SEQ and again == near  # the same files as before
    stats = cache.update([*again, typed], seq=seq)
    assert stats.tokens_reprocessed <= 10
    assert cache.cached_prefix([_flat(files)[:1200]], 0) == 1200  # the preload's work is all there
    # The whole context decoded, the window too (the preload aims at the cursor): back to sequence 0.
    cache.update([*files, typed])
    seq, whole, left_out = completion_context(cache, files, typed, wait)
    assert (seq, whole, left_out) == (0, files, 0)
    cache.close()


def test_with_one_sequence_completions_stay_on_it(source_texts: list[str]) -> None:
    model = Model(tiny_model_path("recurrent"))
    cache = ContextCache(model, options())
    files = make_segments(model, source_texts, random.Random(4), n_segments=4, size=200)
    window = model.tokenize(source_texts[2])[:100]
    cache.update([_flat(files)[:300]])
    seq, near, left_out = completion_context(cache, files, window, 32)
    assert seq == 0 and len(_flat(near)) == 332 and left_out == len(_flat(files)) - 332
    cache.close()
