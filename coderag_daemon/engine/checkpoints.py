"""Where checkpoints are taken, what they cost, which ones are kept and which one is restored.

A checkpoint at position `c` is the part of the model state that cannot be recovered by truncating
the KV cache (the sliding-window cache, or a recurrent state) after exactly the tokens `[0, c)`.
It stays valid as long as those tokens are unchanged, so on every update the store drops the
checkpoints past the first changed token. Plain Python: the engine does the copying.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

log = logging.getLogger("coderag_daemon.engine")


def checkpoint_positions(start: int, end: int, interval: int, boundaries: Iterable[int], min_gap: int = 0) -> list[int]:
    """Positions in (start, end] where a checkpoint is taken while decoding tokens [start, end).

    Every multiple of `interval` and every segment boundary; also `end - 1`, so that asking again
    for the same context (its last token's logits) costs one token instead of a whole segment.
    A position less than `min_gap` after the previous one is skipped: each stop splits a decode
    batch, and a stop a few tokens after another saves nothing. Kept positions are never more than
    `interval` apart, so an edit still reprocesses at most `interval` tokens before it.
    """
    wanted = {p for p in boundaries if start < p <= end}
    wanted.update(range((start // interval + 1) * interval, end + 1, interval))
    kept: list[int] = []
    for p in sorted(wanted):
        if not kept or p - kept[-1] >= min_gap or p == end:
            kept.append(p)
    if end - 1 > start and end - 1 not in kept:
        kept.insert(-1 if kept and kept[-1] == end else len(kept), end - 1)
    return kept


@dataclass
class Checkpoint:
    pos: int
    data: bytearray
    """Writable, so llama.cpp can read it in place without another copy."""

    @property
    def nbytes(self) -> int:
        return len(self.data)


@dataclass
class CheckpointStore:
    """Checkpoints ordered by position, within a byte budget.

    Eviction keeps coverage spread over the context: it drops the checkpoint whose removal leaves
    the smallest gap between its neighbours (the worst case of reprocessing after an edit grows
    least), not the oldest. Ties go to the earlier checkpoint, since edits cluster at the tail.
    """

    budget_bytes: int
    _items: list[Checkpoint] = field(default_factory=list)
    evicted: int = 0

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Checkpoint]:
        return iter(self._items)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._items)

    @property
    def positions(self) -> list[int]:
        return [c.pos for c in self._items]

    def add(self, checkpoint: Checkpoint, context_end: int) -> bool:
        """Store a checkpoint (replacing one at the same position); evict to fit. False if it cannot fit."""
        if checkpoint.nbytes > self.budget_bytes:
            log.debug(
                "checkpoint at %d (%d bytes) exceeds the whole budget; not kept", checkpoint.pos, checkpoint.nbytes
            )
            return False
        self.discard(checkpoint.pos)
        bisect.insort(self._items, checkpoint, key=lambda c: c.pos)
        while self.nbytes > self.budget_bytes:
            self._evict_one(context_end, protect=checkpoint.pos)
        return True

    def discard(self, pos: int) -> None:
        self._items = [c for c in self._items if c.pos != pos]

    def invalidate_after(self, pos: int) -> int:
        """Drop checkpoints past `pos` (their tokens changed); return how many were dropped."""
        keep = [c for c in self._items if c.pos <= pos]
        dropped = len(self._items) - len(keep)
        self._items = keep
        return dropped

    def candidates(self, pos: int) -> list[Checkpoint]:
        """Checkpoints at or before `pos`, nearest first: the order in which restores are tried."""
        return [c for c in reversed(self._items) if c.pos <= pos]

    def clear(self) -> None:
        self._items.clear()

    def _evict_one(self, context_end: int, protect: int) -> None:
        positions = [0] + self.positions + [max(context_end, self._items[-1].pos)]
        best_i, best_gap = -1, None
        for i, item in enumerate(self._items):
            if item.pos == protect and len(self._items) > 1:
                continue
            gap = positions[i + 2] - positions[i]
            if best_gap is None or gap < best_gap:
                best_i, best_gap = i, gap
        victim = self._items.pop(best_i)
        self.evicted += 1
        log.debug("evicted checkpoint at %d (%d bytes; gap becomes %s)", victim.pos, victim.nbytes, best_gap)
