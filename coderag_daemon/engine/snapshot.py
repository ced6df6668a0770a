"""The cache engine's whole state as bytes, so a restarted daemon starts warm instead of decoding its
context again (~60 s for 4K tokens on a 2-core CPU).

`ContextCache.save_state` gathers a `CacheState` and `encode` lays it out; `decode` reads it back and
`ContextCache.load_state` hands it to llama.cpp. A state is only valid for the same model file, llama.cpp
build and context settings (`snapshot_key`): it is stored inside the payload and compared on loading.

llama.cpp's part is the state of the whole context (`llama_state_get_data`), not one image per
sequence (`llama_state_seq_get_data_ext`): a whole-context image writes every used cell once with all
the sequence ids that tag it, so the prefix two sequences share and the pin sequences of a full-size
sliding-window cache come back as they were, cell for cell. A per-sequence image holds the shared
prefix once per sequence and is restored into separate cells (the sharing is lost), drops the pins,
and leaves out the sliding-window cells outside the sequence's last window, after which the sequence
could no longer be cut or shared before its end. The whole-context image also carries the logits of
the last decode (n_vocab floats), which the engine keeps itself: a small price.

Layout (little-endian; numbers as struct, arrays as raw numpy bytes, no pickle):

    header    magic "CRDGSNAP", u32 format version, u32 CRC-32 of the body, u64 body length
    body      u32 length + the key as JSON
              u32 n_vocab, u32 sequences, u32 current sequence, u32 shared prefix
              per sequence: u32 tokens, i32 target length (-1: none), u32 has logits,
                            i32[tokens], f32[n_vocab] logits if any, f32[n_vocab] target logits if any
              u32 checkpoints; per checkpoint: u32 position, u64 size, its bytes
              u64 size + llama.cpp's state of the context

The CRC covers the body, so a damaged payload is refused before llama.cpp reads it (llama.cpp checks
lengths while reading, not the KV values). `decode` raises ValueError; the cache, which imports this
module, turns that into its SnapshotError (an EngineError) and empties itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

if TYPE_CHECKING:
    from .cache import ContextCache

MAGIC = b"CRDGSNAP"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sIIQ")
_COUNTS = struct.Struct("<IIII")
_SEQUENCE = struct.Struct("<IiI")
_CHECKPOINT = struct.Struct("<IQ")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()
"""One hash at a time: a caller that needs the digest while another thread computes it waits for it."""


def model_digest(path: str | Path) -> str:
    """sha256 of a model file, hashed once per process for an unchanged file (same path, size and
    mtime): a 500 MB model takes about a second."""
    path = os.path.abspath(path)
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _digest_lock:
        if key not in _digests:
            with open(path, "rb") as f:
                _digests[key] = hashlib.file_digest(f, "sha256").hexdigest()
        return _digests[key]


def snapshot_key(cache: ContextCache) -> dict[str, Any]:
    """Everything that changes the numbers a state holds, or its layout: the model file, the llama.cpp
    build and the CPU features its kernels use, and the context's settings (`swa_mode` as the strategy
    it chose). Thread counts, the checkpoint interval and budget are left out: they change the speed, or
    which checkpoints exist, not what a cell holds. Two caches with equal keys can exchange states."""
    model, o = cache.model, cache.options
    return {
        "format": FORMAT_VERSION,
        "model_sha256": model_digest(model.path),
        "arch": model.arch,
        "kind": model.kind,
        "n_swa": model.n_swa,
        "n_vocab": model.n_vocab,
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp": llama_cpp.llama_version().decode(),
        "state_versions": [llama_cpp.LLAMA_SESSION_VERSION, llama_cpp.LLAMA_STATE_SEQ_VERSION],
        "system": llama_cpp.llama_print_system_info().decode().strip(),
        "n_ctx": cache.n_ctx,
        "n_batch": o.n_batch,
        "n_seq": cache.n_seq,
        "kv_type": o.kv_type,
        "flash_attn": o.flash_attn,
        "strategy": cache.strategy,
    }


@dataclass
class SequenceState:
    tokens: np.ndarray
    """int32"""
    logits: np.ndarray | None
    target_logits: tuple[int, np.ndarray] | None


@dataclass
class CacheState:
    """What `ContextCache` holds besides its settings; arrays may be views into the payload."""

    key: dict[str, Any]
    n_vocab: int
    sequences: list[SequenceState]
    current: int
    shared: int
    checkpoints: list[tuple[int, memoryview]]
    """(position, partial-state image), by position."""
    llama_state: np.ndarray
    """uint8: llama.cpp's state of the whole context."""


def encode(state: CacheState) -> bytes:
    key = json.dumps(state.key, sort_keys=True, separators=(",", ":")).encode()
    parts: list[bytes | memoryview] = [
        _U32.pack(len(key)),
        key,
        _COUNTS.pack(state.n_vocab, len(state.sequences), state.current, state.shared),
    ]
    for s in state.sequences:
        parts += [
            _SEQUENCE.pack(len(s.tokens), -1 if s.target_logits is None else s.target_logits[0], s.logits is not None),
            _array(s.tokens, np.int32),
        ]
        if s.logits is not None:
            parts.append(_array(s.logits, np.float32, state.n_vocab))
        if s.target_logits is not None:
            parts.append(_array(s.target_logits[1], np.float32, state.n_vocab))
    parts.append(_U32.pack(len(state.checkpoints)))
    for pos, data in state.checkpoints:
        parts += [_CHECKPOINT.pack(pos, len(data)), data]
    parts += [_U64.pack(state.llama_state.nbytes), state.llama_state.data]
    crc, length = 0, 0
    for part in parts:
        crc, length = zlib.crc32(part, crc), length + len(part)
    return b"".join([_HEADER.pack(MAGIC, FORMAT_VERSION, crc, length), *parts])


def decode(payload: bytes, expected_key: dict[str, Any]) -> CacheState:
    """Read a payload written by `encode` whose key equals `expected_key`; ValueError names what is
    wrong. Arrays and images are read-only views into `payload`."""
    if len(payload) < _HEADER.size:
        raise ValueError(f"the payload has {len(payload)} bytes, less than its header")
    magic, version, crc, length = _HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise ValueError("not a saved cache (wrong magic bytes)")
    if version != FORMAT_VERSION:
        raise ValueError(f"format version {version}, this engine reads {FORMAT_VERSION}")
    body = memoryview(payload)[_HEADER.size :]
    if len(body) != length:
        raise ValueError(f"the body has {len(body)} bytes, its header says {length}")
    if zlib.crc32(body) != crc:
        raise ValueError("checksum mismatch: the payload is damaged")
    r = _Reader(body)
    key = json.loads(bytes(r.take(r.u32())))
    if not isinstance(key, dict):
        raise ValueError("the payload's key is not a JSON object")
    if key != expected_key:
        diff = sorted(k for k in key.keys() | expected_key.keys() if key.get(k) != expected_key.get(k))
        raise ValueError(
            "saved with another model, build or settings: "
            + ", ".join(f"{k} {key.get(k)!r} (now {expected_key.get(k)!r})" for k in diff)
        )
    n_vocab, n_sequences, current, shared = r.unpack(_COUNTS)
    sequences = []
    for _ in range(n_sequences):
        n_tokens, target_n, has_logits = r.unpack(_SEQUENCE)
        tokens = r.array(np.int32, n_tokens)
        logits = r.array(np.float32, n_vocab) if has_logits else None
        target = (target_n, r.array(np.float32, n_vocab)) if target_n >= 0 else None
        sequences.append(SequenceState(tokens, logits, target))
    checkpoints = []
    for _ in range(r.u32()):
        pos, size = r.unpack(_CHECKPOINT)
        checkpoints.append((pos, r.take(size)))
    llama_state = r.array(np.uint8, r.unpack(_U64)[0])
    if r.remaining:
        raise ValueError(f"{r.remaining} bytes left over after the cache's state")
    return CacheState(key, n_vocab, sequences, current, shared, checkpoints, llama_state)


def _array(values: np.ndarray | list[int], dtype: type, size: int | None = None) -> memoryview:
    array: np.ndarray = np.ascontiguousarray(values, dtype=dtype)
    if size is not None and array.shape != (size,):
        raise ValueError(f"an array of shape {array.shape}, expected ({size},)")
    return array.data.cast("B")


class _Reader:
    """Sequential reads from a buffer; reading past its end is a ValueError."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.offset = data, 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset

    def take(self, n: int) -> memoryview:
        if n > self.remaining:
            raise ValueError(f"the payload ends {n - self.remaining} bytes early (at byte {self.offset})")
        self.offset += n
        return self.data[self.offset - n : self.offset]

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        return layout.unpack(self.take(layout.size))

    def u32(self) -> int:
        return int(self.unpack(_U32)[0])

    def array(self, dtype: type, count: int) -> np.ndarray:
        return np.frombuffer(self.take(count * np.dtype(dtype).itemsize), dtype=dtype)
