"""What the KV cache holds, and how it is brought to a new target context.

The target is a list of segments (one per file, then the request tail). Attention is causal, so
after an edit only the tokens from the first changed one onward must be decoded again. How far back
the cache can be rewound depends on the model:

- dense attention (and sliding-window models with a full-size SWA cache): truncation anywhere is
  free and exact;
- sliding-window attention with a small SWA cache: truncation is exact only while the cache still
  holds the window before the cut; beyond that a partial-state checkpoint must be restored;
- recurrent and hybrid models: the recurrent state cannot be truncated at all; only a checkpoint
  brings it back.

Checkpoints are taken while decoding, every `checkpoint_interval` tokens and at segment boundaries.
A checkpoint that fails to restore is dropped and an earlier one tried, down to an empty cache:
slower, never wrong. One instance owns one llama context and is used from one thread.

Where truncation is always exact (dense, full-size SWA cache) the context holds two sequences in
one unified KV cache, so two targets that share a prefix (the completion and the chat over the same
files) each keep their own tail: an update of one sequence copies the cells of the prefix it shares
with the other (`llama_memory_seq_cp` only tags cells) instead of decoding them again. When the two
do not fit in n_ctx together, the other sequence is dropped. Checkpoint strategies keep one sequence.
With a full-size SWA cache each cell also carries a pin sequence, so that llama.cpp never hands a
cell that fell out of one sequence's window to the other (`_ids`); a cut or a shared prefix is still
only taken where the cells hold the window before it (`_holds_window`).
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import llama_cpp
import numpy as np

from . import snapshot
from .checkpoints import Checkpoint, CheckpointStore, checkpoint_positions
from .model import Model
from .options import MIB, EngineOptions
from .shape import attention_shape
from .threads import ThreadPolicy

log = logging.getLogger("coderag_daemon.engine")

Strategy = Literal["truncate", "swa-full", "swa-checkpoints", "state-checkpoints"]
RestoreKind = Literal["none", "truncate", "checkpoint", "shared", "reset", "disk"]
_PARTIAL = llama_cpp.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
_KV_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "f32": llama_cpp.GGML_TYPE_F32}


class EngineError(RuntimeError):
    """llama.cpp refused an operation the engine needed."""


class ContextOverflowError(EngineError):
    """The target context does not fit in n_ctx; the caller must trim it."""


class SnapshotError(EngineError):
    """A saved cache cannot be loaded: damaged, saved with another model, build or settings, or refused
    by llama.cpp. The cache is then empty; decoding the context again is the way on."""


@dataclass
class UpdateStats:
    """What one update did; the daemon reports these per request."""

    n_tokens: int
    first_changed: int
    restored_from: int
    restore_kind: RestoreKind
    tokens_reprocessed: int = 0
    restore_ms: float = 0.0
    decode_ms: float = 0.0
    checkpoint_ms: float = 0.0
    checkpoints_taken: int = 0
    checkpoints_invalidated: int = 0
    completed: bool = True

    @property
    def tokens_kept(self) -> int:
        return self.restored_from


@dataclass
class _Sequence:
    """One sequence of the llama context: the tokens its cells hold, and the logits generation
    starts from."""

    id: int
    tokens: list[int] = field(default_factory=list)
    logits: np.ndarray | None = None
    target_logits: tuple[int, np.ndarray] | None = None
    """(n, logits after the first n tokens) of the last completed update: generation appends tokens
    after them, and the next update back to that context needs its last logits again."""
    loaded: bool = False
    """Holds tokens from `load_state` and was not updated since: the next update that keeps some of
    them says so (restore kind "disk")."""
    ends: list[int] = field(default_factory=list)
    """Where the segments of the last update's target end."""

    def forget(self) -> None:
        self.tokens.clear()
        self.logits = self.target_logits = None
        self.loaded = False
        self.ends = []


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class ContextCache:
    """One llama context, its sequences, and its checkpoints. `tokens` and `logits()` are those of
    the sequence last updated, which generation extends."""

    def __init__(self, model: Model, options: EngineOptions | None = None) -> None:
        self.ctx = None
        self.model = model
        self.options = options or EngineOptions()
        self.strategy: Strategy = self._choose_strategy()
        self.n_seq = 2 if self.strategy in ("truncate", "swa-full") else 1
        self._pinned = self.strategy == "swa-full"
        """Each sequence s is mirrored by a pin sequence s + n_seq tagging the same cells (see _ids)."""
        self.threads = ThreadPolicy(self.options.n_threads)
        self._threads_set = self.threads.current
        self.ctx = self._create_context(swa_full=self.strategy == "swa-full")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self._batch = llama_cpp.llama_batch_init(self.options.n_batch, 0, 2 if self._pinned else 1)
        self._seqs = [_Sequence(i) for i in range(self.n_seq)]
        self._seq = self._seqs[0]
        self._shared = 0
        """Leading positions whose cells belong to both sequences (counted once in n_ctx)."""
        self.checkpoints = CheckpointStore(self.options.checkpoint_budget_bytes)
        log.info(
            "cache: %s model, strategy %s, n_ctx %d, %d sequence(s), interval %d",
            model.kind,
            self.strategy,
            self.n_ctx,
            self.n_seq,
            self.options.checkpoint_interval,
        )

    @property
    def tokens(self) -> list[int]:
        """Tokens of the sequence last updated (read-only for callers)."""
        return self._seq.tokens

    def cached_prefix(self, segments: Sequence[Sequence[int]], seq: int | None = None) -> int:
        """How many leading tokens of the concatenated segments sequence `seq` (by default, some
        sequence) holds, decoded. What an update would keep of them is `reusable`: where the target
        goes on differently after them, a small sliding-window cache may have to go back further."""
        target = list(itertools.chain.from_iterable(segments))
        seqs = self._seqs if seq is None else [self._sequence(seq)]
        return max(common_prefix(s.tokens, target) for s in seqs)

    def reusable(self, segments: Sequence[Sequence[int]], seq: int = 0) -> int:
        """How many leading tokens of the concatenated segments an update of sequence `seq` to them
        would keep rather than decode: the choices `update` makes, between the other sequence's
        prefix and its own (cut, or the nearest checkpoint before the cut). An update to a longer
        target that starts with them keeps at least as many. Lets a request leave out context that
        is not decoded yet."""
        target = list(itertools.chain.from_iterable(segments))
        s, n = self._sequence(seq), len(target)
        p = common_prefix(s.tokens, target)
        if n == 0 or (p == n and self._holds_target(s, n)):
            return n
        return max(self._shareable(s, target, n - 1), self._keepable(s, min(p, n - 1)))

    def segment_ends(self, seq: int) -> list[int]:
        """Where the segments of the last update to sequence `seq` end, of those it still holds whole:
        a caller can take up the same context again (a completion keeps to the files it was given)."""
        s = self._sequence(seq)
        return [e for e in s.ends if e <= len(s.tokens)]

    @property
    def cells_used(self) -> int:
        """KV cells in use by all sequences, of n_ctx."""
        return sum(len(s.tokens) for s in self._seqs) - self._shared

    def _sequence(self, seq: int) -> _Sequence:
        """Sequence `seq`; with a single sequence, every `seq` is that one."""
        return self._seqs[min(max(seq, 0), self.n_seq - 1)]

    def _other(self, s: _Sequence) -> _Sequence | None:
        """The sequence beside `s`, or None when the context has one."""
        return self._seqs[1 - s.id] if self.n_seq == 2 else None

    def _ids(self, s: _Sequence) -> tuple[int, ...]:
        """The llama sequence ids that tag `s`'s cells. With a full-size SWA cache llama.cpp still
        reuses a cell held by one sequence once it fell out of that sequence's window, and then
        drops that sequence's positions up to the cell's (including its share of prefix cells): one
        sequence's decode would evict the other's early window, and truncating or sharing from that
        one would no longer be exact. A pin sequence on every cell makes each cell held by two
        sequences, which llama.cpp never reuses; the full-size cache has room for every cell."""
        return (s.id, s.id + self.n_seq) if self._pinned else (s.id,)

    def _remove(self, s: _Sequence, p0: int, p1: int) -> bool:
        """Remove positions [p0, p1) of `s` (p1 < 0: to the end) from the memory."""
        return all([bool(llama_cpp.llama_memory_seq_rm(self.memory, i, p0, p1)) for i in self._ids(s)])

    # --- set-up -------------------------------------------------------------------------------

    def _choose_strategy(self) -> Strategy:
        kind = self.model.kind
        if kind == "dense":
            return "truncate"
        if kind in ("recurrent", "hybrid"):
            return "state-checkpoints"
        mode = self.options.swa_mode
        if mode == "auto":
            one = self.swa_checkpoint_estimate()
            needed = one * math.ceil(self.options.n_ctx / self.options.checkpoint_interval)
            mode = "checkpoints" if needed <= self.options.checkpoint_budget_bytes else "full"
            log.info(
                "swa_mode auto: %.1f MiB per checkpoint, ~%d MiB for full coverage vs a %d MiB budget -> %s",
                one / MIB,
                needed // MIB,
                self.options.checkpoint_budget_bytes // MIB,
                mode,
            )
        return "swa-checkpoints" if mode == "checkpoints" else "swa-full"

    def swa_checkpoint_estimate(self) -> int:
        """Bytes of one partial-state image: the last n_swa positions of each sliding-window layer's
        K and V (`shape`). A tight upper bound where llama.cpp's layer layout for the architecture
        is known (it counts a per-cell extension only some models write), else one that counts
        every layer."""
        shape = attention_shape(self.model.metadata, self.model.arch)
        if not shape.pattern_known:
            log.info(
                "sliding-window layers of a %s model not known here; sizing checkpoints as if every layer "
                "had a window (an upper bound)",
                self.model.arch,
            )
        cells = min(self.model.n_swa, self.options.n_ctx)
        return shape.swa_checkpoint_bytes(cells, 4 if self.options.kv_type == "f32" else 2)

    def _create_context(self, swa_full: bool) -> llama_cpp.llama_context_p:
        o = self.options
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = o.n_ctx
        params.n_batch = o.n_batch
        params.n_ubatch = o.n_batch
        params.n_seq_max = 2 * self.n_seq if self._pinned else self.n_seq
        params.kv_unified = True  # one pool of n_ctx cells; shared prefix cells are stored once
        params.n_threads = params.n_threads_batch = self.threads.current
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if o.flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.swa_full = swa_full
        params.no_perf = True
        params.type_k = params.type_v = _KV_TYPES[o.kv_type]
        if o.n_ctx > self.model.n_ctx_train > 0:
            log.warning(
                "n_ctx %d exceeds the %d tokens %s was trained on; quality may drop past that",
                o.n_ctx,
                self.model.n_ctx_train,
                self.model.name,
            )
        ctx = llama_cpp.llama_init_from_model(self.model.ptr, params)
        if not ctx:
            raise EngineError(
                f"llama.cpp could not create a context of {o.n_ctx} tokens for {self.model.path.name} "
                "(out of memory?); try a smaller n_ctx"
            )
        return ctx

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self.close()

    # --- the update -------------------------------------------------------------------------------

    @property
    def uses_checkpoints(self) -> bool:
        return self.options.checkpoint_budget_bytes > 0 and self.strategy in ("swa-checkpoints", "state-checkpoints")

    def update(
        self,
        segments: Sequence[Sequence[int]],
        interrupt: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
        seq: int = 0,
    ) -> UpdateStats:
        """Make sequence `seq` hold the concatenated segments, decoding as little as possible.

        `interrupt` is polled before every batch; when it returns True the update stops there and
        the cache holds a valid prefix of the target (stats.completed is False), so the next update
        resumes where this one stopped. `progress(done, total)` follows the decoding, batch by batch.
        `seq` picks the sequence; with a single one, every `seq` is that one.
        """
        target = list(itertools.chain.from_iterable(segments))
        if not target:
            raise ValueError("the target context is empty")
        if len(target) > self.n_ctx:
            raise ContextOverflowError(
                f"the context needs {len(target)} tokens but n_ctx is {self.n_ctx}; trim it or raise n_ctx"
            )
        self._seq = self._sequence(seq)
        boundaries = list(itertools.accumulate(len(s) for s in segments))
        s = self._seq
        from_disk, s.loaded = s.loaded, False
        stats = self._update(target, boundaries, interrupt, progress)
        s.ends = boundaries
        if from_disk and stats.restored_from > 0:
            stats.restore_kind = "disk"
        return stats

    def _update(
        self,
        target: list[int],
        boundaries: list[int],
        interrupt: Callable[[], bool] | None,
        progress: Callable[[int, int], None] | None,
    ) -> UpdateStats:
        s = self._seq
        p = common_prefix(s.tokens, target)
        n = len(target)
        if p == n == len(s.tokens) and s.logits is not None:
            return UpdateStats(n, p, p, "none")
        if p == n and self._back_to_target_end(n):
            return UpdateStats(n, p, p, "truncate")
        # The last token is decoded again when needed: its logits start the generation.
        p = min(p, n - 1)
        dropped = self.checkpoints.invalidate_after(p)
        t0 = time.perf_counter()
        r, kind = self._share(p, target) or self._rewind(p)
        self._make_room(n - r)
        stats = UpdateStats(n, p, r, kind, checkpoints_invalidated=dropped, restore_ms=_ms(t0))
        self._decode_target(target, boundaries, interrupt, progress, stats)
        if stats.completed and s.logits is not None:  # a completed update decoded its last token with logits
            s.target_logits = (n, s.logits)
        return stats

    def _back_to_target_end(self, n: int) -> bool:
        """Drop generated tokens after the last update's context of n tokens, keeping its logits, so
        the request after a generation does not decode that context's last token again."""
        s = self._seq
        if s.target_logits is None or s.target_logits[0] != n or not self._truncate(n):
            return False
        s.logits = s.target_logits[1]
        return True

    def _holds_target(self, s: _Sequence, n: int) -> bool:
        """Whether an update of `s` to a target of n tokens it holds decodes nothing: it ends there
        with its logits, or it can go back there (`_back_to_target_end`)."""
        if len(s.tokens) == n and s.logits is not None:
            return True
        return s.target_logits is not None and s.target_logits[0] == n and self._can_truncate(s, n)

    def _share(self, p: int, target: list[int]) -> tuple[int, RestoreKind] | None:
        """Take the cells of a common prefix from the other sequence when that keeps more than
        rewinding the current one to p: it becomes 'the other's first q tokens' without decoding."""
        s = self._seq
        other = self._other(s)
        q = self._shareable(s, target, len(target) - 1)
        if other is None or q <= self._keepable(s, p):
            return None
        self._remove(s, 0, -1)
        for src, dst in zip(self._ids(other), self._ids(s), strict=True):
            llama_cpp.llama_memory_seq_cp(self.memory, src, dst, 0, q)
        s.forget()
        s.tokens.extend(other.tokens[:q])
        self._shared = q
        return q, "shared"

    def _shareable(self, s: _Sequence, target: Sequence[int], limit: int) -> int:
        """How many leading tokens of `target` (at most `limit`) `s` could take from the other
        sequence exactly: the common prefix q when the other's cells still hold the window before
        q, else 0 (a shorter prefix needs a window that starts earlier still)."""
        other = self._other(s)
        if other is None:
            return 0
        q = min(common_prefix(other.tokens, target), limit)
        return q if self._holds_window(other, q) else 0

    def _keepable(self, s: _Sequence, p: int) -> int:
        """What rewinding `s` to p keeps (`_rewind`): p where the memory can be cut exactly there,
        else the nearest checkpoint before p, else nothing."""
        if p >= len(s.tokens) or self._can_truncate(s, p):
            return min(p, len(s.tokens))
        return next((c.pos for c in self.checkpoints.candidates(p)), 0)

    def _make_room(self, count: int) -> None:
        """Drop the other sequence when its cells and `count` more would not fit in n_ctx."""
        other = self._other(self._seq)
        if self.cells_used + count > self.n_ctx and other is not None and other.tokens:
            log.info("dropping sequence %d (%d tokens) to make room for %d", other.id, len(other.tokens), count)
            self.drop(other.id)

    def drop(self, seq: int) -> None:
        """Forget sequence `seq` and free the cells only it holds. Held cells cost even when unused:
        attention runs over every cell up to the last one in use, masked or not. With a single
        sequence this does nothing (every `seq` is the one the other requests use)."""
        if self.n_seq == 1 or not 0 <= seq < self.n_seq or not self._seqs[seq].tokens:
            return
        dropped = self._seqs[seq]
        self._remove(dropped, 0, -1)
        dropped.forget()
        self._shared = 0
        rest = self._other(dropped)
        if self.strategy == "truncate" and rest is not None and rest.tokens:
            self._compact(rest)

    def _compact(self, s: _Sequence) -> None:
        """Move the only sequence's cells to the front of the cache, in their order. Cells decoded
        while the other sequence was held sit above its cells, so after a drop the attention would
        still span the holes it left. Copies the sequence's KV out and back (tens of ms).

        Dense models only: llama.cpp's copy of a sequence leaves out the sliding-window cells outside
        its last window, so the moved sequence could no longer be cut or shared before its end."""
        size = llama_cpp.llama_state_seq_get_size(self.ctx, s.id)
        data = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(self.ctx, data, size, s.id) != size:
            log.warning("could not copy sequence %d out; its cells stay where they are", s.id)
            return
        llama_cpp.llama_memory_clear(self.memory, True)
        if llama_cpp.llama_state_seq_set_data(self.ctx, data, size, s.id) != size:
            log.warning("could not copy sequence %d back; it is decoded again on its next update", s.id)
            llama_cpp.llama_memory_clear(self.memory, True)
            s.forget()

    def _rewind(self, p: int) -> tuple[int, RestoreKind]:
        """Bring the memory to 'tokens[:r] decoded' for the largest usable r <= p."""
        s = self._seq
        if p >= len(s.tokens):
            return len(s.tokens), "none"
        s.logits = None
        if s.target_logits is not None and p < s.target_logits[0]:
            s.target_logits = None
        if p == 0:
            return self._reset(), "reset"
        if self._truncate(p):
            return p, "truncate"
        for checkpoint in self.checkpoints.candidates(p):
            if self._restore(checkpoint):
                del s.tokens[checkpoint.pos :]
                return checkpoint.pos, "checkpoint"
            log.warning("checkpoint at %d failed to restore; trying an earlier one", checkpoint.pos)
            self.checkpoints.discard(checkpoint.pos)
        return self._reset(), "reset"

    def _truncate(self, p: int) -> bool:
        """Cut the memory and tokens back to p where that is exact."""
        if self._can_truncate(self._seq, p) and self._remove(self._seq, p, -1):
            del self._seq.tokens[p:]
            self._shared = min(self._shared, p)
            return True
        return False

    def _can_truncate(self, s: _Sequence, p: int) -> bool:
        """Whether cutting `s` back to p leaves a memory that continues exactly from p."""
        if self.strategy == "truncate":
            return True
        return self.strategy in ("swa-full", "swa-checkpoints") and self._holds_window(s, p)

    def _holds_window(self, s: _Sequence, p: int) -> bool:
        """Whether `s`'s sliding-window cells cover the window of a token decoded at p. llama.cpp
        masks position p0 from p1 when p1 - p0 >= n_swa, so that token attends to p - n_swa + 1 ..
        p - 1 (a chunked window starts no earlier); a sequence's cells span [pos_min, pos_max]
        without holes (llama.cpp drops the positions below a reused cell)."""
        if self.model.n_swa <= 0 or p <= 0:
            return True
        pos_min = llama_cpp.llama_memory_seq_pos_min(self.memory, s.id)
        return 0 <= pos_min <= max(0, p - self.model.n_swa + 1)

    def _restore(self, checkpoint: Checkpoint) -> bool:
        data = checkpoint.data
        buf = (ctypes.c_uint8 * len(data)).from_buffer(data)
        if llama_cpp.llama_state_seq_set_data_ext(self.ctx, buf, len(data), self._seq.id, _PARTIAL) == 0:
            return False
        return bool(llama_cpp.llama_memory_seq_rm(self.memory, self._seq.id, checkpoint.pos, -1))

    def _reset(self) -> int:
        """Empty the current sequence (the whole memory when it is the only one)."""
        if self.n_seq == 1:
            llama_cpp.llama_memory_clear(self.memory, True)
        else:
            self._remove(self._seq, 0, -1)
        self._seq.forget()
        self._shared = 0
        return 0

    def _decode_target(
        self,
        target: list[int],
        boundaries: list[int],
        interrupt: Callable[[], bool] | None,
        progress: Callable[[int, int], None] | None,
        stats: UpdateStats,
    ) -> None:
        start, n = len(self.tokens), len(target)
        stops = (
            checkpoint_positions(
                start, n, self.options.checkpoint_interval, boundaries, min_gap=self.options.n_batch // 8
            )
            if self.uses_checkpoints
            else []
        )
        stop_iter = iter(stops)
        next_stop = next(stop_iter, n + 1)
        pos = start
        while pos < n:
            if interrupt is not None and interrupt():
                stats.completed = False
                return
            end = min(pos + self.options.n_batch, n, next_stop)
            t0 = time.perf_counter()
            self._decode(target[pos:end], pos, logits=end == n)
            stats.decode_ms += _ms(t0)
            stats.tokens_reprocessed += end - pos
            pos = end
            if progress is not None:
                progress(pos - start, n - start)
            if pos == next_stop:
                t0 = time.perf_counter()
                if self._take_checkpoint(pos, n):
                    stats.checkpoints_taken += 1
                stats.checkpoint_ms += _ms(t0)
                next_stop = next(stop_iter, n + 1)

    def _decode(self, tokens: Sequence[int], pos: int, *, logits: bool, every: bool = False) -> np.ndarray | None:
        """Decode `tokens` at `pos` in one batch. With `logits`, keep those after the last token; with
        `every`, return those after each token as well ([len(tokens), n_vocab])."""
        batch = self._batch
        k = len(tokens)
        batch.n_tokens = k
        ids = self._ids(self._seq)
        for i, tok in enumerate(tokens):
            batch.token[i] = tok
            batch.pos[i] = pos + i
            batch.n_seq_id[i] = len(ids)
            for j, seq_id in enumerate(ids):
                batch.seq_id[i][j] = seq_id
            batch.logits[i] = every
        batch.logits[k - 1] = logits or every
        if (threads := self.threads.threads()) != self._threads_set:
            llama_cpp.llama_set_n_threads(self.ctx, threads, threads)
            self._threads_set = threads
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            # llama.cpp rolls back the failed batch itself; self.tokens still matches the memory.
            raise EngineError(f"llama_decode failed with code {rc} at position {pos} ({k} tokens)")
        self._seq.tokens.extend(tokens)
        if every:
            rows = np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.ctx), shape=(k, self.model.n_vocab)).copy()
            self._seq.logits = rows[-1]
            return rows
        if logits:
            ptr = llama_cpp.llama_get_logits_ith(self.ctx, -1)
            self._seq.logits = np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,)).copy()
        else:
            self._seq.logits = None
        return None

    def _take_checkpoint(self, pos: int, context_end: int) -> bool:
        size = llama_cpp.llama_state_seq_get_size_ext(self.ctx, self._seq.id, _PARTIAL)
        if size == 0 or size > self.checkpoints.budget_bytes:
            return False
        data = bytearray(size)
        buf = (ctypes.c_uint8 * size).from_buffer(data)
        if llama_cpp.llama_state_seq_get_data_ext(self.ctx, buf, size, self._seq.id, _PARTIAL) != size:
            log.warning("could not copy the state at %d; no checkpoint there", pos)
            return False
        return self.checkpoints.add(Checkpoint(pos, data), context_end)

    # --- generation support ------------------------------------------------------------------------

    def logits(self) -> np.ndarray:
        """Logits after the last cached token (valid after a completed update or append)."""
        if self._seq.logits is None:
            raise EngineError("no logits: the last update did not complete")
        return self._seq.logits

    def append(self, token: int) -> np.ndarray:
        """Decode one more token (a generated one) and return the logits after it."""
        self._make_room(1)
        if self.cells_used >= self.n_ctx:
            raise ContextOverflowError(f"the context is full ({self.n_ctx} tokens)")
        self._decode([token], len(self.tokens), logits=True)
        return self.logits()

    @property
    def can_cut_back(self) -> bool:
        """Whether tokens appended after an update can be cut off again, exactly, wherever: with dense
        attention and a full-size SWA cache (`cut_back`). Not with a small SWA cache (a batch past the
        cut may push the window before it out of the cells) nor with recurrent state (never cut);
        speculative decoding is off there."""
        return self.strategy in ("truncate", "swa-full")

    def append_many(self, tokens: Sequence[int]) -> np.ndarray:
        """Decode tokens (a generated one and a draft of the next ones) in one batch and return the
        logits after each, [len(tokens), n_vocab]. At most n_batch tokens; as `append`, drops the
        other sequence when they would not fit beside it, and raises ContextOverflowError when they
        do not fit at all (nothing decoded)."""
        if not 0 < len(tokens) <= self.options.n_batch:
            raise ValueError(f"{len(tokens)} tokens for a batch of {self.options.n_batch}")
        self._make_room(len(tokens))
        if self.cells_used + len(tokens) > self.n_ctx:
            raise ContextOverflowError(f"the context is full ({self.n_ctx} tokens)")
        rows = self._decode(tokens, len(self.tokens), logits=True, every=True)
        assert rows is not None
        return rows

    def cut_back(self, n: int, logits: np.ndarray) -> None:
        """Drop the appended tokens after the first n (a rejected draft), where `can_cut_back`;
        `logits` are those after token n - 1, which the caller kept from `append_many`. The cache is
        then as if only the first n tokens had been appended."""
        s = self._seq
        if not 0 < n <= len(s.tokens):
            raise ValueError(f"cannot cut {len(s.tokens)} tokens back to {n}")
        if n < len(s.tokens) and not (self.can_cut_back and self._truncate(n)):
            raise EngineError(f"cannot cut the {self.strategy} cache back to {n} of {len(s.tokens)} tokens")
        s.logits = logits
        if s.target_logits is not None and n < s.target_logits[0]:
            s.target_logits = None

    def clear(self) -> None:
        """Forget everything: every sequence's tokens, the memory and checkpoints."""
        llama_cpp.llama_memory_clear(self.memory, True)
        for s in self._seqs:
            s.forget()
        self._shared = 0
        self.checkpoints.clear()

    # --- saving and loading (snapshot.py) --------------------------------------------------------

    def save_state(self) -> bytes:
        """The whole cache as one self-contained payload: llama.cpp's state of the context, every
        sequence's tokens and logits, the shared prefix, the current sequence and the checkpoints.
        Memory copies only; on the thread that owns the cache, like every call."""
        size = llama_cpp.llama_state_get_size(self.ctx)
        data = np.empty(size, np.uint8)
        if llama_cpp.llama_state_get_data(self.ctx, _pointer(data), size) != size:
            raise EngineError("llama.cpp could not copy the context's state")
        sequences = [
            snapshot.SequenceState(np.array(s.tokens, np.int32), s.logits, s.target_logits) for s in self._seqs
        ]
        return snapshot.encode(
            snapshot.CacheState(
                snapshot.snapshot_key(self),
                self.model.n_vocab,
                sequences,
                self._seq.id,
                self._shared,
                [(c.pos, memoryview(c.data)) for c in self.checkpoints],
                data,
            )
        )

    def load_state(self, payload: bytes) -> int:
        """Replace the cache with one `save_state` wrote (by this process or an earlier one) and return
        the tokens it now holds (`cells_used`). The next update keeps what it shares with the target,
        as after any update. Raises SnapshotError when the payload is damaged, was saved with another
        model, build or settings (`snapshot.snapshot_key`), or llama.cpp refuses it; the cache is then
        empty, never half-loaded."""
        self.clear()
        try:
            self._load(snapshot.decode(payload, snapshot.snapshot_key(self)))
        except ValueError as exc:
            self.clear()
            raise SnapshotError(f"the saved cache cannot be loaded: {exc}") from exc
        log.info(
            "cache: loaded %d tokens in %d sequence(s), %d checkpoint(s)",
            self.cells_used,
            sum(1 for s in self._seqs if s.tokens),
            len(self.checkpoints),
        )
        return self.cells_used

    def _load(self, state: snapshot.CacheState) -> None:
        """Check that the saved counts add up, then hand llama.cpp its state; ValueError otherwise."""
        saved = state.sequences
        if state.n_vocab != self.model.n_vocab or len(saved) != self.n_seq or not 0 <= state.current < self.n_seq:
            raise ValueError(f"{len(saved)} sequence(s) of {state.n_vocab} logits, current {state.current}")
        tokens = [s.tokens.tolist() for s in saved]
        lengths = [len(t) for t in tokens]
        shared_prefix = common_prefix(tokens[0], tokens[-1]) if self.n_seq == 2 else 0
        if not 0 <= state.shared <= shared_prefix or sum(lengths) - state.shared > self.n_ctx:
            raise ValueError(f"sequences of {lengths} tokens sharing {state.shared} do not fit {self.n_ctx} cells")
        positions = [pos for pos, _ in state.checkpoints]
        if positions != sorted(set(positions)) or any(not 0 < pos <= lengths[0] for pos in positions):
            raise ValueError(f"checkpoints at {positions} for {lengths[0]} tokens")
        if any(s.target_logits is not None and s.target_logits[0] > len(s.tokens) for s in saved):
            raise ValueError("logits kept for more tokens than a sequence holds")
        data = state.llama_state
        if llama_cpp.llama_state_set_data(self.ctx, _pointer(data), data.nbytes) != data.nbytes:
            raise ValueError("llama.cpp refused the context's state")
        for s, loaded, n in zip(self._seqs, saved, lengths, strict=True):
            held = [llama_cpp.llama_memory_seq_pos_max(self.memory, i) + 1 for i in self._ids(s)]
            if held != [n] * len(held):
                raise ValueError(f"llama.cpp holds {held} positions of sequence {s.id}, the cache {n}")
            s.tokens[:] = tokens[s.id]
            s.logits = None if loaded.logits is None else loaded.logits.copy()
            if loaded.target_logits is not None:
                s.target_logits = (loaded.target_logits[0], loaded.target_logits[1].copy())
            s.loaded = bool(s.tokens)
        for pos, image in state.checkpoints:
            self.checkpoints.add(Checkpoint(pos, bytearray(image)), lengths[0])
        self._seq = self._seqs[state.current]
        self._shared = state.shared


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _pointer(data: np.ndarray) -> ctypes._Pointer[ctypes.c_uint8]:
    """A uint8 array's memory for llama.cpp, without a copy (read-only arrays too)."""
    return data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
