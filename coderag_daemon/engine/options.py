"""Settings of the cache engine, with defaults sized for a 2-core laptop CPU.

Those the daemon's users can set take their defaults from the settings table (..settings, a leaf
module), so an engine built without them behaves as the daemon does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..settings import default_of

SwaMode = Literal["auto", "checkpoints", "full"]
KvType = Literal["f16", "f32"]
MIB = 1 << 20


@dataclass
class EngineOptions:
    n_ctx: int = default_of("n_ctx")
    """Context window in tokens: the file context, request tail and generated tokens share it."""
    n_batch: int = 128
    """Tokens per decode call; an interactive request preempts background prefill within one batch,
    so a request arriving during a preload waits for up to one batch (~1 s at 128 tokens on two
    cores, ~4 s at 512). On the default model a 4K-token prefill ran as fast in batches of 64 or 128
    as of 512 (docs/DAEMON.md, "The first minutes")."""
    n_threads: int = default_of("threads")
    """CPU threads for decoding; 0 = the cores other programs leave free, followed as they change
    (`engine.threads`)."""
    checkpoint_interval: int = default_of("checkpoint_interval")
    """Tokens between checkpoints (also taken at every segment boundary)."""
    checkpoint_budget_bytes: int = default_of("checkpoint_memory_mib") * MIB
    """Memory for checkpoint data; beyond it, checkpoints are evicted keeping coverage spread."""
    swa_mode: SwaMode = "auto"
    """Sliding-window models: 'checkpoints' (small SWA cache + partial-state checkpoints, faster
    prefill), 'full' (full-size SWA cache, plain truncation, more KV memory), or 'auto' (checkpoints
    when the budget holds one per interval over the whole context, else full)."""
    flash_attn: bool = False
    """Flash attention: on a 2-core CPU it was slower for prefill and decode alike, the more so the
    longer the context (`coderag-daemon bench attention`)."""
    kv_type: KvType = "f16"
    """KV cache precision. f32 doubles KV and checkpoint memory; it makes a sliding-window model's
    restored cache agree with a fresh evaluation to ~1e-6 instead of f16 rounding (~1e-4), since a
    restore places the same values in other cells and the attention sums them in another order."""
    seed: int = 0
    """Seed for sampled generation."""

    def __post_init__(self) -> None:
        if self.n_threads < 0:
            raise ValueError(f"n_threads must be >= 0 (0: the free cores), got {self.n_threads}")
        for name in ("n_ctx", "n_batch", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive number of tokens, got {getattr(self, name)}")
        if self.checkpoint_budget_bytes < 0:
            raise ValueError(f"checkpoint_budget_bytes must be >= 0, got {self.checkpoint_budget_bytes}")
        if self.kv_type not in ("f16", "f32"):
            raise ValueError(f"kv_type must be 'f16' or 'f32', got {self.kv_type!r}")
        if self.swa_mode not in ("auto", "checkpoints", "full"):
            raise ValueError(f"swa_mode must be 'auto', 'checkpoints' or 'full', got {self.swa_mode!r}")
