"""The attention layout of a model as llama.cpp lays out its KV cache, read from GGUF metadata.

It sizes a sliding-window checkpoint before any context exists, so that `swa_mode="auto"` can weigh
checkpoints against a full-size SWA cache. A checkpoint (`LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY`) is
the SWA cache of one sequence, and llama.cpp writes only its cells that are not masked for the
sequence's last position (`llama_kv_cache::state_write`): with a standard window, the last `n_swa`
positions, whatever the batch size, on the sliding-window layers only. Sizes follow that format.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

# llama.cpp hard-codes which layers use the sliding window per architecture (src/models/<arch>.cpp,
# `load_swa_pattern(ml, n, dense_first)`): layer il slides when il % n < n - 1 (n - 1 window layers,
# then a global one), or with dense_first when il % n != 0. A GGUF key
# `<arch>.attention.sliding_window_pattern` overrides n, or lists the layers as booleans.
SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "afmoe": (4, False),
    "cohere2": (4, False),
    "cohere2moe": (4, True),
    "exaone-moe": (4, False),
    "exaone4": (4, False),
    "gemma-embedding": (6, False),
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma3n": (5, False),
    "gpt-oss": (2, False),
    "laguna": (4, True),
    "llama4": (4, False),
    "mellum": (4, False),
    "modern-bert": (3, True),
    "muse-glimmer": (4, False),
    "olmo2": (4, False),
    "plamo3": (8, False),
    "smallthinker": (4, True),
}

_IMAGE_HEADER = 8  # llama_context: u32 magic, sequence id
_STREAM_HEADER = 8  # u32 stream count, u32 cell count
_DATA_HEADER = 8  # u32 "V transposed", u32 layer count
_ROWS_HEADER = 12  # per layer, before its K rows and before its V rows: type and row (or element) size
_CELL_META = 24  # per cell: position, seq-id count, one seq id, and a 12-byte extension (M-RoPE models)


@dataclass(frozen=True)
class AttentionLayer:
    swa: bool
    k_width: int
    """Elements of one cell's K row (head size × KV heads); V likewise."""
    v_width: int


@dataclass(frozen=True)
class AttentionShape:
    layers: tuple[AttentionLayer, ...]
    """The layers that hold a KV cache (a recurrent layer has no KV heads)."""
    pattern_known: bool
    """False when llama.cpp's layout for the architecture is not known here: every layer then
    counts as a sliding-window layer, an upper bound."""

    def swa_checkpoint_bytes(self, cells: int, kv_bytes: int) -> int:
        """Bytes of a partial-state image holding `cells` positions of every sliding-window layer,
        with `kv_bytes` per K/V element (2 for f16, 4 for f32)."""
        swa = [layer for layer in self.layers if layer.swa]
        if not swa or cells <= 0:
            return _IMAGE_HEADER + _STREAM_HEADER
        rows = sum(2 * _ROWS_HEADER + cells * (layer.k_width + layer.v_width) * kv_bytes for layer in swa)
        return _IMAGE_HEADER + _STREAM_HEADER + cells * _CELL_META + _DATA_HEADER + rows


def attention_shape(metadata: Mapping[str, str], arch: str) -> AttentionShape:
    """The KV layout llama.cpp builds for a model of architecture `arch` from its GGUF metadata
    (scalars as strings, per-layer arrays as their Python list's text)."""
    n_layer = _int(metadata, f"{arch}.block_count", 0)
    n_embd = _int(metadata, f"{arch}.embedding_length", 0)
    n_head = _per_layer(metadata, f"{arch}.attention.head_count", n_layer, 1)
    n_head_kv = _per_layer(metadata, f"{arch}.attention.head_count_kv", n_layer, None) or n_head
    head = n_embd // max(n_head[0], 1) if n_head else n_embd
    k_full = _int(metadata, f"{arch}.attention.key_length", head)
    v_full = _int(metadata, f"{arch}.attention.value_length", head)
    k_swa = _int(metadata, f"{arch}.attention.key_length_swa", k_full)
    v_swa = _int(metadata, f"{arch}.attention.value_length_swa", v_full)
    swa, known = _swa_layers(metadata, arch, n_layer)
    layers = tuple(
        AttentionLayer(True, k_swa * n_head_kv[il], v_swa * n_head_kv[il])
        if swa[il]
        else AttentionLayer(False, k_full * n_head_kv[il], v_full * n_head_kv[il])
        for il in range(n_layer)
        if n_head_kv[il] > 0
    )
    return AttentionShape(layers, known)


def _swa_layers(metadata: Mapping[str, str], arch: str, n_layer: int) -> tuple[list[bool], bool]:
    """Which layers slide, and whether that is llama.cpp's layout or the all-layers fallback."""
    value = _literal(metadata.get(f"{arch}.attention.sliding_window_pattern"))
    if isinstance(value, list) and len(value) >= n_layer:
        return [bool(v) for v in value[:n_layer]], True
    if arch not in SWA_PATTERNS:
        return [True] * n_layer, False
    n, dense_first = SWA_PATTERNS[arch]
    if isinstance(value, int):
        n = value
    if n == 0:
        return [True] * n_layer, True
    return [il % n != 0 if dense_first else il % n < n - 1 for il in range(n_layer)], True


def _per_layer(metadata: Mapping[str, str], key: str, n_layer: int, default: int | None) -> list[int]:
    """A per-layer count given once for all layers or as an array; [] when absent without default."""
    value = _literal(metadata.get(key))
    if isinstance(value, list):
        return [int(v) for v in value[:n_layer]] + [0] * (n_layer - len(value))
    if isinstance(value, int):
        return [value] * n_layer
    return [] if default is None else [default] * n_layer


def _int(metadata: Mapping[str, str], key: str, default: int) -> int:
    value = _literal(metadata.get(key))
    return value if isinstance(value, int) else default


def _literal(text: str | None) -> object:
    if text is None:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
