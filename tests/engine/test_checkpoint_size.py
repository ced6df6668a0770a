"""A sliding-window checkpoint's size is estimated from the model's shape before any context exists
(swa_mode="auto" weighs it against the budget); it must bound the checkpoints llama.cpp then writes,
tightly: the image holds the last n_swa positions of the sliding-window layers only."""

from __future__ import annotations

import ctypes
import logging
import math
import random
from types import SimpleNamespace

import llama_cpp
import pytest

from coderag_daemon import default_model
from coderag_daemon.engine import ContextCache, EngineOptions, Model
from coderag_daemon.engine import shape as shape_module
from coderag_daemon.engine.shape import attention_shape
from fixtures.tiny_models import SWA_N_LAYER, tiny_model_path

from .conftest import make_segments, options

TIGHT = 1.10
"""The estimate may exceed the measured size by this factor at most."""


@pytest.fixture(scope="module")
def swa_model() -> Model:
    return Model(tiny_model_path("swa"))


def measured_checkpoint_bytes(model: Model, opts: EngineOptions, segments: list[list[int]]) -> int:
    """The size of the checkpoints the engine took past the window while decoding `segments`: one
    size, whether the checkpoint ends a batch or splits one (llama.cpp writes the last n_swa cells)."""
    cache = ContextCache(model, opts)
    cache.update(segments)
    sizes = {c.nbytes for c in cache.checkpoints if c.pos >= model.n_swa}
    assert len(sizes) == 1 and len(cache.checkpoints) >= 4, (cache.checkpoints.positions, sizes)
    return sizes.pop()


@pytest.mark.parametrize("kv_type", ["f32", "f16"])
def test_estimate_bounds_the_tiny_models_checkpoints_tightly(
    swa_model: Model, source_texts: list[str], kv_type: str
) -> None:
    # checkpoints right after a full batch (interval points) and inside one (boundaries, N - 1)
    segments = make_segments(swa_model, source_texts, random.Random(41), n_segments=3, size=120)
    measured = measured_checkpoint_bytes(swa_model, options(kv_type=kv_type), segments)
    estimate = ContextCache(swa_model, options(kv_type=kv_type)).swa_checkpoint_estimate()
    assert measured <= estimate <= TIGHT * measured, (measured, estimate)


def llama_metadata(model: llama_cpp.llama_model_p) -> dict[str, str]:
    """Scalar metadata as llama.cpp holds it: what Model.metadata holds for a model without per-layer
    arrays, without Model's gguf-py pass over Gemma's 262k-token vocabulary (half a minute here)."""
    out: dict[str, str] = {}
    key, value = ctypes.create_string_buffer(256), ctypes.create_string_buffer(1 << 16)
    for i in range(llama_cpp.llama_model_meta_count(model)):
        llama_cpp.llama_model_meta_key_by_index(model, i, key, len(key))
        llama_cpp.llama_model_meta_val_str_by_index(model, i, value, len(value))
        out[key.value.decode()] = value.value.decode("utf-8", "replace")
    return out


def test_estimate_bounds_gemma3_270m_checkpoints_tightly() -> None:
    if not default_model.is_installed(default_model.GEMMA3_270M):
        pytest.skip(
            f"Gemma 3 270M is not installed at {default_model.model_path(default_model.GEMMA3_270M)} "
            f"({default_model.GEMMA3_270M.install_hint})"
        )
    path = default_model.model_path(default_model.GEMMA3_270M)
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    assert model
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch, params.swa_full = 1024, 512, 512, False
    params.n_threads = params.n_threads_batch = 1
    params.type_k = params.type_v = llama_cpp.GGML_TYPE_F16
    ctx = llama_cpp.llama_init_from_model(model, params)
    n_swa = llama_cpp.llama_model_n_swa(model)
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    try:
        for start in range(0, n_swa + 8, 512):  # past the window, the last batch a partial one
            batch.n_tokens = min(512, n_swa + 8 - start)
            for i in range(batch.n_tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = 1000 + start + i, start + i, 1, False
                batch.seq_id[i][0] = 0
            assert llama_cpp.llama_decode(ctx, batch) == 0
        measured = llama_cpp.llama_state_seq_get_size_ext(ctx, 0, llama_cpp.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY)
        metadata = llama_metadata(model)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    arch = metadata["general.architecture"]
    assert sum(layer.swa for layer in attention_shape(metadata, arch).layers) == 15
    # the engine's estimate for this model and these options, with a stand-in for Model
    stand_in = SimpleNamespace(
        model=SimpleNamespace(metadata=metadata, arch=arch, n_swa=n_swa),
        options=EngineOptions(n_ctx=1024, n_batch=512, kv_type="f16"),
    )
    estimate = ContextCache.swa_checkpoint_estimate(stand_in)
    assert measured <= estimate <= TIGHT * measured, (measured, estimate)


def test_auto_keeps_checkpoints_while_the_budget_holds_them(swa_model: Model, source_texts: list[str]) -> None:
    segments = make_segments(swa_model, source_texts, random.Random(41), n_segments=3, size=120)
    one = measured_checkpoint_bytes(swa_model, options(), segments)
    coverage = math.ceil(options().n_ctx / options().checkpoint_interval)
    roomy = ContextCache(swa_model, options(swa_mode="auto", checkpoint_budget_bytes=int(coverage * one * TIGHT)))
    tight = ContextCache(swa_model, options(swa_mode="auto", checkpoint_budget_bytes=coverage * one - 1))
    assert (roomy.strategy, tight.strategy) == ("swa-checkpoints", "swa-full")


def test_unknown_layout_counts_every_layer_and_says_so(
    swa_model: Model, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    known = ContextCache(swa_model, options()).swa_checkpoint_estimate()
    monkeypatch.delitem(shape_module.SWA_PATTERNS, "gemma3")
    with caplog.at_level(logging.INFO, logger="coderag_daemon.engine"):
        bound = ContextCache(swa_model, options(swa_mode="auto")).swa_checkpoint_estimate()
    assert "every layer" in caplog.text and "gemma3" in caplog.text
    # 6 layers of K and V instead of 5, plus the same headers
    assert bound > known and abs(bound / known - SWA_N_LAYER / (SWA_N_LAYER - 1)) < 0.01


def test_per_layer_head_counts_come_from_the_gguf_array() -> None:
    """The hybrid model gives its KV heads per layer (0 on recurrent layers): only attention layers count."""
    model = Model(tiny_model_path("hybrid"))
    assert model.metadata["granitehybrid.attention.head_count_kv"] == "[0, 2, 0, 2]"
    assert len(attention_shape(model.metadata, model.arch).layers) == 2


# --- the layouts llama.cpp hard-codes, from metadata alone -------------------------------------------


def meta(arch: str, n_layer: int, **extra: str) -> dict[str, str]:
    return {
        f"{arch}.block_count": str(n_layer),
        f"{arch}.embedding_length": "640",
        f"{arch}.attention.head_count": "4",
        f"{arch}.attention.head_count_kv": "1",
        f"{arch}.attention.key_length": "256",
        f"{arch}.attention.value_length": "256",
        **{f"{arch}.{k}": v for k, v in extra.items()},
    }


def swa_flags(metadata: dict[str, str], arch: str) -> list[bool]:
    return [layer.swa for layer in attention_shape(metadata, arch).layers]


def test_gemma3_slides_on_five_layers_of_six() -> None:
    flags = swa_flags(meta("gemma3", 18), "gemma3")
    assert flags == [il % 6 != 5 for il in range(18)] and sum(flags) == 15
    # Gemma 3 270M, f16, 512-token window: 15 layers x 512 cells x (256 + 256) x 2 bytes, plus headers
    shape = attention_shape(meta("gemma3", 18), "gemma3")
    assert 0 < shape.swa_checkpoint_bytes(512, 2) - 15 * 512 * 512 * 2 < 16 * 1024


def test_dense_first_layouts_start_with_a_global_layer() -> None:
    assert swa_flags(meta("cohere2moe", 8), "cohere2moe") == [False, True, True, True] * 2


def test_gguf_pattern_overrides_the_default() -> None:
    every_third = meta("gemma3", 6, **{"attention.sliding_window_pattern": "3"})
    assert swa_flags(every_third, "gemma3") == [True, True, False] * 2
    listed = meta("gemma4", 4, **{"attention.sliding_window_pattern": "[True, False, False, True]"})
    assert swa_flags(listed, "gemma4") == [True, False, False, True]
    assert attention_shape(listed, "gemma4").pattern_known


def test_sliding_window_head_sizes_apply_to_window_layers_only() -> None:
    metadata = meta("gemma2", 4, **{"attention.key_length_swa": "128", "attention.value_length_swa": "64"})
    layers = attention_shape(metadata, "gemma2").layers
    assert [(layer.swa, layer.k_width, layer.v_width) for layer in layers] == [
        (True, 128, 64),
        (False, 256, 256),
        (True, 128, 64),
        (False, 256, 256),
    ]


def test_unknown_architecture_is_an_upper_bound() -> None:
    shape = attention_shape(meta("mystery", 5), "mystery")
    assert not shape.pattern_known and all(layer.swa for layer in shape.layers) and len(shape.layers) == 5
