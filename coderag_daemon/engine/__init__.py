"""The cache engine: the only package that talks to llama.cpp."""

from .cache import ContextCache, ContextOverflowError, EngineError, UpdateStats
from .generate import Generation, GenerationOptions, generate
from .model import Model, ModelError
from .options import EngineOptions

__all__ = [
    "ContextCache", "ContextOverflowError", "EngineError", "EngineOptions", "Generation",
    "GenerationOptions", "Model", "ModelError", "UpdateStats", "generate",
]
