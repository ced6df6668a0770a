"""`reusable` tells before an update how much of a target the cache keeps, on every model kind: a
completion cuts its file context that many tokens on (jobs.within_reach), so it must agree with
what `update` then does, and the preload that completes the context afterwards must stay exact."""

from __future__ import annotations

import random

import numpy as np

from coderag_daemon.engine import ContextCache, Model
from coderag_daemon.worker.jobs import within_reach

from .conftest import make_segments, options
from .test_exactness import TOLERANCE, edit, flat


def test_reusable_is_what_the_update_keeps(tiny_model: Model, source_texts: list[str]) -> None:
    rng = random.Random(21)
    cache = ContextCache(tiny_model, options())
    segments = make_segments(tiny_model, source_texts, rng)
    assert cache.reusable(segments) == 0
    cache.update(segments)
    assert cache.reusable(segments) == len(flat(segments))
    for op in ["insert_inside", "delete_inside", "at_boundary", "replace_inside", "insert_inside"]:
        segments = edit(segments, rng, op)
        kept = cache.reusable(segments)
        stats = cache.update(segments)
        assert stats.restored_from == kept, (op, stats)


def test_a_cut_completion_then_the_preload_stay_exact(tiny_model: Model, source_texts: list[str]) -> None:
    rng = random.Random(22)
    cache, fresh = ContextCache(tiny_model, options()), ContextCache(tiny_model, options())
    files = make_segments(tiny_model, source_texts, rng)
    cache.update(files[:2])  # a cold start: the preload had decoded two files when the request came
    edited = [list(s) for s in files]
    edited[3][10:10] = tiny_model.tokenize("x = 1\n")  # and the user edited a later file meanwhile
    tail = tiny_model.tokenize("\n# the cursor window\n")
    kept = cache.reusable(edited)
    assert kept == len(flat(files[:2]))
    cut, left_out = within_reach(edited, kept, 100)
    assert len(flat(cut)) == kept + 100 and left_out == len(flat(edited)) - kept - 100
    request = cache.update([*cut, tail])
    assert request.restored_from == kept and request.tokens_reprocessed == 100 + len(tail)
    fresh.update([*cut, tail])
    assert np.abs(cache.logits() - fresh.logits()).max() <= TOLERANCE

    target = [*edited, tail]
    preload = cache.update(target)  # from the cut on; a boundary checkpoint sits there
    assert preload.restored_from == len(flat(cut)), preload
    fresh.update(target)
    assert np.abs(cache.logits() - fresh.logits()).max() <= TOLERANCE
