"""Watching an engine server's health, so that the daemon's status says when it is down and when it
is back without waiting for a request to fail or succeed."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from .client import RemoteError, ServerClient
from .options import RemoteOptions

log = logging.getLogger("coderag_daemon.engine.remote")

INTERVAL_S = 1.0


class HealthWatch:
    """Polls the server's /health every `interval_s` on a thread of its own and tells `on_health`
    each time: None when it answers, else what to check. Logs when the server goes down or comes
    back. Ends once `done()` is true."""

    def __init__(
        self,
        options: RemoteOptions,
        on_health: Callable[[str | None], None],
        done: Callable[[], bool],
        *,
        down: str | None = None,
        interval_s: float = INTERVAL_S,
    ) -> None:
        quick = dataclasses.replace(options, retries=0, connect_timeout_s=min(2.0, interval_s * 2), read_timeout_s=5.0)
        self._client = ServerClient(quick)
        self._on_health, self._done, self._error, self._interval = on_health, done, down, interval_s
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="coderag-engine-health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._wake.wait(self._interval) and not self._done():
                try:
                    self._client.get(self._client.options.health_path)
                    error = None
                except RemoteError as exc:
                    error = str(exc)
                if self._done():
                    break
                if (error is None) != (self._error is None):
                    log.log(logging.WARNING if error else logging.INFO, "%s", error or "the engine server is back")
                self._error = error
                self._on_health(error)
        finally:
            self._client.close()

    def stop(self) -> None:
        self._wake.set()
