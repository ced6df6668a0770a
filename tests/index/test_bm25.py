"""The incremental BM25 index scores as bm25s does, through additions, removals and merges."""

from __future__ import annotations

import random

import bm25s
import numpy as np
import pytest

from coderag_daemon.index.bm25 import Bm25Index, Bm25Options

WORDS = [f"w{i}" for i in range(60)]


def corpus(rng: random.Random, n: int) -> list[list[str]]:
    return [[rng.choice(WORDS[: rng.randint(5, 60)]) for _ in range(rng.randint(1, 40))] for _ in range(n)]


def counts(doc: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in doc:
        out[w] = out.get(w, 0) + 1
    return out


def bm25s_scores(docs: list[list[str]], query: list[str]) -> np.ndarray:
    retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    retriever.index(docs, show_progress=False)
    return retriever.get_scores(query)


@pytest.mark.parametrize("seed", range(5))
def test_scores_match_bm25s_after_changes(seed: int) -> None:
    rng = random.Random(seed)
    index = Bm25Index(Bm25Options(min_merge=8, merge_fraction=0.1))
    live: dict[int, list[str]] = {}
    for step in range(6):  # the last step (odd) merges
        for doc in corpus(rng, 30):
            live[index.add_counts(counts(doc))] = doc
        for doc_id in rng.sample(sorted(live), 10):
            index.remove(doc_id)
            del live[doc_id]
        if step % 2:
            plan = index.plan_merge(force=True)
            assert plan is not None
            index.apply_merge(plan)
    query = rng.sample(WORDS, 4) + ["w1"]
    ids = sorted(live)
    # the last step merged after its removals (until a merge, removed documents still count in
    # document frequencies, as in Lucene)
    ours = index.scores(query)[ids]
    np.testing.assert_allclose(ours, bm25s_scores([live[i] for i in ids], query), rtol=1e-5, atol=1e-6)


def test_top_ranks_best_first_and_leaves_out_excluded_and_removed() -> None:
    index = Bm25Index()
    a = index.add_counts({"token": 3, "verify": 1})
    b = index.add_counts({"token": 1})
    c = index.add_counts({"other": 2})
    assert [doc for doc, _ in index.top(["token", "verify"], 5)] == [a, b]
    assert [doc for doc, _ in index.top(["token"], 5, exclude=[a])] == [b]
    index.remove(b)
    assert [doc for doc, _ in index.top(["token"], 5)] == [a]
    assert index.top(["missing"], 5) == [] and c not in [d for d, _ in index.top(["token"], 5)]
