"""The cache engine: the only package that talks to llama.cpp, in this process or in an engine server."""

from .cache import ContextCache, ContextOverflowError, EngineError, SnapshotError, UpdateStats
from .generate import Generation, GenerationOptions, generate
from .model import Model, ModelError
from .options import EngineOptions
from .remote import RemoteContext, RemoteError, RemoteOptions
from .snapshot import model_digest, snapshot_key

Context = ContextCache | RemoteContext
"""The context the jobs use: llama.cpp's in this process, or an engine server's slot."""

__all__ = [
    "Context",
    "ContextCache",
    "ContextOverflowError",
    "EngineError",
    "EngineOptions",
    "Generation",
    "GenerationOptions",
    "Model",
    "ModelError",
    "RemoteContext",
    "RemoteError",
    "RemoteOptions",
    "SnapshotError",
    "UpdateStats",
    "generate",
    "model_digest",
    "snapshot_key",
]
