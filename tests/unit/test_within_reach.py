"""How a completion cuts a file context that is not decoded yet: `wait` tokens past what the cache
keeps, never into the head, and nothing cut when the rest is within reach."""

from __future__ import annotations

from coderag_daemon.worker.jobs import within_reach

HEAD = [1, 2]
A = [10] * 10
B = [20] * 10


def test_everything_within_reach_is_kept_whole() -> None:
    assert within_reach([HEAD, A, B], kept=22, wait=0) == ([HEAD, A, B], 0)
    assert within_reach([HEAD, A, B], kept=2, wait=20) == ([HEAD, A, B], 0)
    assert within_reach([HEAD, A, B], kept=0, wait=10**6) == ([HEAD, A, B], 0)


def test_the_cut_lands_wait_tokens_past_the_kept_ones() -> None:
    cut, left_out = within_reach([HEAD, A, B], kept=5, wait=4)
    assert cut == [HEAD, A[:7]] and left_out == 13


def test_a_cut_on_a_boundary_adds_no_empty_segment() -> None:
    assert within_reach([HEAD, A, B], kept=12, wait=0) == ([HEAD, A], 10)


def test_the_head_always_stays() -> None:
    assert within_reach([HEAD, A, B], kept=0, wait=0) == ([HEAD], 20)
    assert within_reach([HEAD, A, B], kept=1, wait=0) == ([HEAD], 20)
