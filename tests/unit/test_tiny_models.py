"""The tiny GGUF fixtures load in the vendored llama.cpp and behave like real models."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import llama_cpp.llama_cpp as llama
import numpy as np
import pytest

from fixtures import tiny_models
from fixtures.tiny_models import (
    EOS_TOKEN,
    GENERATOR_VERSION,
    KINDS,
    tiny_model_path,
    write_tiny_model,
)

# (is_recurrent, is_hybrid, n_swa) expected from llama.cpp for the default models.
EXPECTED_FLAGS = {
    "dense": (False, False, 0),
    "swa": (False, False, 32),
    "recurrent": (True, False, 0),
    "hybrid": (False, True, 0),
}
FIM_TOKENS = {
    "pre": "<|fim_prefix|>",
    "suf": "<|fim_suffix|>",
    "mid": "<|fim_middle|>",
    "pad": "<|fim_pad|>",
    "rep": "<|repo_name|>",
    "sep": "<|file_sep|>",
}
SNIPPET = 'def grüße(name: str) -> str:\n    """Sagt Hallo — 你好 🚀."""\n    return f"Hallo, {name}!"\n'
N_DECODE = 1500  # longer than the SWA cache (window + ubatch), so it wraps


@dataclass(frozen=True)
class Loaded:
    kind: str
    model: llama.llama_model_p
    vocab: llama.llama_vocab_p


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="module", params=KINDS)
def loaded(request: pytest.FixtureRequest, model_dir: Path) -> Iterator[Loaded]:
    llama.llama_backend_init()
    path = tiny_model_path(request.param, model_dir)
    model = llama.llama_model_load_from_file(str(path).encode(), llama.llama_model_default_params())
    assert model, f"llama.cpp failed to load {path}"
    yield Loaded(request.param, model, llama.llama_model_get_vocab(model))
    llama.llama_model_free(model)


def tokenize(vocab: llama.llama_vocab_p, text: str, *, parse_special: bool = False) -> list[int]:
    data = text.encode()
    buf = (llama.llama_token * (len(data) + 1))()
    n = llama.llama_tokenize(vocab, data, len(data), buf, len(buf), False, parse_special)
    assert n >= 0
    return list(buf[:n])


def piece(vocab: llama.llama_vocab_p, token: int, *, special: bool = False) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = llama.llama_token_to_piece(vocab, token, buf, len(buf), 0, special)
    assert n >= 0
    return buf.raw[:n]


def decode_logits(loaded: Loaded, tokens: list[int], chunk: int, *, flash_attn: int) -> np.ndarray:
    """Logits of every position, decoding ``tokens`` in chunks of ``chunk``."""
    params = llama.llama_context_default_params()
    params.n_ctx = 4096
    params.n_batch = params.n_ubatch = 512
    params.swa_full = False
    params.flash_attn_type = flash_attn
    # One thread: OpenMP spin-waits make 2 threads far slower on a busy 2-core box.
    params.n_threads = params.n_threads_batch = 1
    ctx = llama.llama_init_from_model(loaded.model, params)
    assert ctx
    n_vocab = llama.llama_vocab_n_tokens(loaded.vocab)
    batch = llama.llama_batch_init(chunk, 0, 1)
    rows = []
    try:
        for start in range(0, len(tokens), chunk):
            part = tokens[start : start + chunk]
            batch.n_tokens = len(part)
            for i, token in enumerate(part):
                batch.token[i] = token
                batch.pos[i] = start + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            assert llama.llama_decode(ctx, batch) == 0
            for i in range(len(part)):
                logits = llama.llama_get_logits_ith(ctx, i)
                rows.append(np.ctypeslib.as_array(logits, shape=(n_vocab,)).copy())
    finally:
        llama.llama_batch_free(batch)
        llama.llama_free(ctx)
    return np.stack(rows)


@pytest.fixture(scope="module")
def source_tokens(loaded: Loaded) -> list[int]:
    text = Path(tiny_models.__file__).read_text(encoding="utf-8") + SNIPPET
    tokens = tokenize(loaded.vocab, text)
    assert len(tokens) >= N_DECODE
    return tokens[:N_DECODE]


def test_kind_flags(loaded: Loaded) -> None:
    observed = (
        llama.llama_model_is_recurrent(loaded.model),
        llama.llama_model_is_hybrid(loaded.model),
        llama.llama_model_n_swa(loaded.model),
    )
    assert observed == EXPECTED_FLAGS[loaded.kind]
    assert llama.llama_model_n_ctx_train(loaded.model) >= 4096


def test_special_tokens(loaded: Loaded) -> None:
    vocab = loaded.vocab
    for name, text in FIM_TOKENS.items():
        token = getattr(llama, f"llama_vocab_fim_{name}")(vocab)
        assert piece(vocab, token, special=True) == text.encode()
    assert piece(vocab, llama.llama_vocab_eos(vocab), special=True) == EOS_TOKEN.encode()
    assert not llama.llama_vocab_get_add_bos(vocab)
    prompt = "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>"
    fim = [llama.llama_vocab_fim_pre(vocab), llama.llama_vocab_fim_suf(vocab), llama.llama_vocab_fim_mid(vocab)]
    assert tokenize(vocab, prompt, parse_special=True)[::2] == fim


def test_tokenize_round_trips_utf8(loaded: Loaded) -> None:
    tokens = tokenize(loaded.vocab, SNIPPET)
    assert b"".join(piece(loaded.vocab, t) for t in tokens) == SNIPPET.encode()
    assert len(tokens) < len(SNIPPET), "code pieces should merge, not fall back to bytes"


def test_logits_finite_and_position_dependent(loaded: Loaded, source_tokens: list[int]) -> None:
    logits = decode_logits(loaded, source_tokens, 256, flash_attn=llama.LLAMA_FLASH_ATTN_TYPE_AUTO)
    assert np.isfinite(logits).all()
    assert logits.std(axis=1).min() > 0.1, "logits nearly constant over the vocab"
    tokens = np.array(source_tokens)
    positions = np.flatnonzero(tokens == np.bincount(tokens).argmax())
    same_token = logits[positions]
    assert np.abs(same_token[1:] - same_token[:-1]).max(axis=1).min() > 1e-2


def test_chunked_decode_matches_one_batch_without_flash_attn(loaded: Loaded, source_tokens: list[int]) -> None:
    """Without flash attention, llama.cpp's CPU results do not depend on how a
    sequence is split into batches, which is what exactness tests rely on."""
    disabled = llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
    whole = decode_logits(loaded, source_tokens, 512, flash_attn=disabled)
    chunked = decode_logits(loaded, source_tokens, 37, flash_attn=disabled)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5)


def test_sliding_window_is_configurable(tmp_path: Path) -> None:
    path = write_tiny_model("swa", tmp_path / "swa16.gguf", sliding_window=16)
    model = llama.llama_model_load_from_file(str(path).encode(), llama.llama_model_default_params())
    assert model
    try:
        assert llama.llama_model_n_swa(model) == 16
    finally:
        llama.llama_model_free(model)


@pytest.mark.parametrize("kind", KINDS)
def test_generator_is_deterministic(kind: str, tmp_path: Path) -> None:
    first = write_tiny_model(kind, tmp_path / "a.gguf").read_bytes()
    assert write_tiny_model(kind, tmp_path / "b.gguf").read_bytes() == first
    assert write_tiny_model(kind, tmp_path / "c.gguf", seed=1).read_bytes() != first
    assert len(first) < 5_000_000


def test_tiny_model_path_caches_by_version(tmp_path: Path) -> None:
    path = tiny_model_path("dense", tmp_path)
    assert path.name == f"tiny-dense-v{GENERATOR_VERSION}.gguf"
    mtime = path.stat().st_mtime_ns
    assert tiny_model_path("dense", tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_unknown_kind_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiny model kind"):
        write_tiny_model("moe", tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="unknown tiny model kind"):
        tiny_model_path("moe", tmp_path)
