"""Tiny real models (generated, cached under .build/) and real source text for engine tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from coderag_daemon.engine import EngineOptions, Model
from fixtures.tiny_models import KINDS, tiny_model_path

# Contexts here are far longer than the sliding-window cache (window 32 + batch 64, padded to 256
# cells) and edits land far behind the end: shorter ones would pass with plain truncation.
# An f32 KV cache: with f16, a restored sliding-window cache differs from a fresh one by f16 rounding
# of a reordered attention sum (~2e-4 here); test_exactness checks that case separately.
# One thread: tiny models gain nothing from two, and a busy second core would stall them.
OPTIONS = dict(n_ctx=4096, n_batch=64, checkpoint_interval=128, swa_mode="checkpoints", kv_type="f32", n_threads=1)


@pytest.fixture(scope="session", params=KINDS)
def tiny_model(request: pytest.FixtureRequest) -> Model:
    return Model(tiny_model_path(request.param))


@pytest.fixture(scope="session")
def source_texts() -> list[str]:
    """Real Python source files from the standard library."""
    root = Path(json.__file__).parent.parent
    names = ["json/decoder.py", "json/encoder.py", "textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py"]
    return [(root / n).read_text(encoding="utf-8") for n in names]


def options(**overrides: object) -> EngineOptions:
    return EngineOptions(**{**OPTIONS, **overrides})


def make_segments(
    model: Model, texts: list[str], rng: random.Random, n_segments: int = 6, size: int = 240
) -> list[list[int]]:
    """One segment per file, each cut to about `size` tokens (with some spread)."""
    segments = []
    for i in range(n_segments):
        tokens = model.tokenize(f"# file {i}\n" + texts[i % len(texts)])
        segments.append(tokens[: rng.randint(size * 3 // 4, size * 5 // 4)])
    return segments
