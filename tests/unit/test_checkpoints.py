"""Where checkpoints are taken and which ones survive a tight budget."""

from __future__ import annotations

from coderag_daemon.engine.checkpoints import Checkpoint, CheckpointStore, checkpoint_positions


def cp(pos: int, size: int = 10) -> Checkpoint:
    return Checkpoint(pos, bytearray(size))


def test_positions_cover_interval_boundaries_and_last_token() -> None:
    assert checkpoint_positions(0, 1000, 256, [100, 700, 1000]) == [100, 256, 512, 700, 768, 999, 1000]


def test_positions_close_to_the_previous_one_are_skipped() -> None:
    # boundaries 1 and 20 tokens after interval points would each split a batch for nothing
    assert checkpoint_positions(0, 2000, 512, [513, 1044, 1300], min_gap=64) == [512, 1024, 1300, 1536, 1999]
    kept = checkpoint_positions(0, 5000, 512, range(0, 5000, 37), min_gap=64)
    assert all(b - a <= 512 for a, b in zip([0, *kept], kept, strict=False))


def test_positions_only_after_start() -> None:
    assert checkpoint_positions(600, 1000, 256, [100, 700]) == [700, 768, 999]
    assert checkpoint_positions(999, 1000, 256, []) == []


def test_eviction_keeps_coverage_spread() -> None:
    store = CheckpointStore(budget_bytes=40)
    for pos in (100, 200, 210, 300):
        store.add(cp(pos), context_end=400)
    store.add(cp(390), context_end=400)
    # 200 and 210 sit close together: dropping one of them leaves the smallest gap
    assert store.positions in ([100, 210, 300, 390], [100, 200, 300, 390])
    assert store.nbytes <= 40 and store.evicted == 1


def test_eviction_is_not_oldest_first() -> None:
    store = CheckpointStore(budget_bytes=30)
    for pos in (100, 500, 510):
        store.add(cp(pos), context_end=1000)
    store.add(cp(900), context_end=1000)
    assert 100 in store.positions and 900 in store.positions


def test_newest_checkpoint_is_protected() -> None:
    store = CheckpointStore(budget_bytes=20)
    store.add(cp(10), context_end=100)
    store.add(cp(20), context_end=100)
    store.add(cp(21), context_end=100)
    assert 21 in store.positions and len(store) == 2


def test_oversized_checkpoint_is_refused_not_crashing() -> None:
    store = CheckpointStore(budget_bytes=5)
    assert not store.add(cp(10, size=6), context_end=100)
    assert len(store) == 0


def test_invalidate_and_candidates() -> None:
    store = CheckpointStore(budget_bytes=1000)
    for pos in (128, 256, 384, 512):
        store.add(cp(pos), context_end=600)
    assert [c.pos for c in store.candidates(300)] == [256, 128]
    assert store.invalidate_after(256) == 2
    assert store.positions == [128, 256]


def test_same_position_replaces() -> None:
    store = CheckpointStore(budget_bytes=1000)
    store.add(cp(128, 10), context_end=600)
    store.add(cp(128, 20), context_end=600)
    assert len(store) == 1 and store.nbytes == 20


def test_a_checkpoint_at_the_first_changed_token_is_valid_and_one_after_it_is_not() -> None:
    """A checkpoint at c holds tokens [0, c): an edit at c leaves it valid, an edit at c - 1 does not."""
    store = CheckpointStore(budget_bytes=1000)
    for pos in (100, 200, 201):
        store.add(cp(pos), context_end=300)
    assert [c.pos for c in store.candidates(200)] == [200, 100]
    assert [c.pos for c in store.candidates(199)] == [100]
    assert store.invalidate_after(200) == 1 and store.positions == [100, 200]
    assert store.invalidate_after(199) == 1 and store.positions == [100]
