"""coderag-daemon: a local code assistant that keeps the project's files warm in the model's KV cache."""

__version__ = "0.1.0"
