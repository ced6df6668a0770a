"""Settings of a remote engine: where the server is, how to authenticate, how long to wait."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ...settings import check_api_key_source, default_of
from ..options import EngineOptions

API_KEY_ENV = default_of("engine_api_key").removeprefix("env:")
"""Where the API key is read from by default (unset: no key is sent)."""


@dataclass
class RemoteOptions(EngineOptions):
    """An engine whose model runs in llama-server (or an OpenAI-compatible server) at `url`; the
    inherited options that size the context (n_ctx) still hold, those of the local llama context
    (threads, batch, checkpoints) do not apply."""

    url: str = ""
    """The server's base URL: http(s)://host:port for llama-server's own API, a URL ending in /v1 for an
    OpenAI-compatible one."""
    api_key: str = default_of("engine_api_key")
    """Where the API key is: "env:NAME" (an environment variable) or "file:PATH" (its first line); the
    key itself is never a setting, so it stays out of settings files and logs."""
    slot: int = default_of("engine_slot")
    """llama-server's slot (`id_slot`) this daemon uses: daemons sharing a server each take their own,
    so none evicts another's cached prefix (start the server with -np at least their number)."""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    """Longest silence on an open connection: a long prefill on a slow server sends progress meanwhile."""
    retries: int = 2
    """Attempts after the first for a request that failed before any answer (connection refused or
    reset, HTTP 502/503/504), each after a doubling delay from `backoff_s`."""
    backoff_s: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the engine URL must be http://host:port or https://host:port, got {self.url!r}")
        self.url = self.url.rstrip("/")
        check = check_api_key_source(self.api_key)
        if check:
            raise ValueError(check)
        if self.slot < 0:
            raise ValueError(f"the engine slot must not be negative, got {self.slot}")

    @property
    def openai(self) -> bool:
        """The server speaks the OpenAI API (the URL ends in /v1), not llama-server's own."""
        return urlsplit(self.url).path.endswith("/v1")

    @property
    def health_path(self) -> str:
        """What answers while the server is up: llama-server's /health, an OpenAI server's model list."""
        return "/models" if self.openai else "/health"

    def read_api_key(self) -> str | None:
        """The key, read at each request so a rotated key is picked up; never logged."""
        kind, _, where = self.api_key.partition(":")
        if kind == "file":
            path = Path(where).expanduser()
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ValueError(f"cannot read the engine API key file {path}: {exc.strerror}") from exc
            return lines[0].strip() if lines and lines[0].strip() else None
        return os.environ.get(where) or None
