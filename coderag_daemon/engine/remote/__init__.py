"""The remote engine: the model runs in llama-server (or an OpenAI-compatible server), the daemon
keeps everything above the engine. See docs/REMOTE.md."""

from ..model import Model
from .cache import RemoteContext
from .client import RemoteError, RemoteUnavailable, ServerClient
from .openai import OpenAIContext
from .options import API_KEY_ENV, RemoteOptions


def connect(model: Model, options: RemoteOptions) -> RemoteContext:
    """The context on the server at `options.url`: llama-server's own API, or the OpenAI one (/v1)."""
    return OpenAIContext(model, options) if options.openai else RemoteContext(model, options)


__all__ = [
    "API_KEY_ENV",
    "OpenAIContext",
    "RemoteContext",
    "RemoteError",
    "RemoteOptions",
    "RemoteUnavailable",
    "ServerClient",
    "connect",
]
