"""The cache engine: the only package that talks to llama.cpp."""

from .cache import ContextCache, ContextOverflowError, EngineError, SnapshotError, UpdateStats
from .generate import Generation, GenerationOptions, generate
from .model import Model, ModelError
from .options import EngineOptions
from .snapshot import model_digest, snapshot_key

__all__ = [
    "ContextCache",
    "ContextOverflowError",
    "EngineError",
    "EngineOptions",
    "Generation",
    "GenerationOptions",
    "Model",
    "ModelError",
    "SnapshotError",
    "UpdateStats",
    "generate",
    "model_digest",
    "snapshot_key",
]
