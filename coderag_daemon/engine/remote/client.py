"""HTTP to the engine server: JSON requests with bounded retries, server-sent event streams that can
be stopped at any time, and every failure turned into an error that says what to check.

Nothing here logs a request's headers or the API key. A stream is read on a thread of its own so the
caller polls cancellation between events (and during a long silence) and stops it by closing the
connection, which makes llama-server cancel the task.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests

from ..cache import ContextOverflowError, EngineError
from .options import API_KEY_ENV, RemoteOptions

log = logging.getLogger("coderag_daemon.engine.remote")

_RETRY_STATUS = frozenset({502, 503, 504})
_POLL_S = 0.05
"""How often a stream's reader looks whether the caller wants it stopped."""


class RemoteError(EngineError):
    """The engine server answered something the daemon cannot use; the message says what to check."""


class RemoteUnavailable(RemoteError):
    """The engine server cannot be reached (down, wrong URL, network), or stays busy (HTTP 503)."""


class ServerClient:
    """One engine server's HTTP API. Used from the model worker; streams read on their own threads."""

    def __init__(self, options: RemoteOptions) -> None:
        self.options = options
        self.url = options.url
        self._http = requests.Session()

    def close(self) -> None:
        self._http.close()

    def _headers(self) -> dict[str, str]:
        try:
            key = self.options.read_api_key()
        except ValueError as exc:
            raise RemoteError(str(exc)) from exc
        return {"Authorization": f"Bearer {key}"} if key else {}

    def get(self, path: str) -> Any:
        return self._json(self._send("GET", path, None, stream=False))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._json(self._send("POST", path, body, stream=False))

    def stream(self, path: str, body: dict[str, Any]) -> Stream:
        """POST `body` with `stream: true` and read the events as they come."""
        return Stream(self, self._send("POST", path, {**body, "stream": True}, stream=True))

    def _send(self, method: str, path: str, body: dict[str, Any] | None, *, stream: bool) -> requests.Response:
        """The response to a request that the server accepted (2xx); retried where nothing was done."""
        o = self.options
        for attempt in range(o.retries + 1):
            try:
                response = self._http.request(
                    method,
                    self.url + path,
                    json=body,
                    headers=self._headers(),
                    stream=stream,
                    timeout=(o.connect_timeout_s, o.read_timeout_s),
                )
            except requests.ConnectionError as exc:
                problem: RemoteError = RemoteUnavailable(
                    f"cannot reach the engine server at {self.url} ({_reason(exc)}): check that the server runs "
                    "there and that the URL, port and network are right"
                )
            except requests.Timeout:
                problem = RemoteUnavailable(
                    f"the engine server at {self.url} did not answer {method} {path} in time: check that it is not "
                    "overloaded and the network is up"
                )
            else:
                if response.status_code not in _RETRY_STATUS:
                    self._check(response, path)
                    return response
                problem = RemoteUnavailable(
                    f"the engine server at {self.url} is unavailable (HTTP {response.status_code} on {path}): "
                    f"{_detail(response)}"
                )
                response.close()
            if attempt < o.retries:
                delay = o.backoff_s * 2**attempt
                log.info("%s; trying again in %.2f s", problem, delay)
                time.sleep(delay)
        raise problem

    def _check(self, response: requests.Response, path: str) -> None:
        """Raise the error a non-2xx answer means."""
        code = response.status_code
        if code < 300:
            return
        detail = _detail(response)
        response.close()
        if code in (401, 403):
            raise RemoteError(
                f"the engine server at {self.url} refused the API key (HTTP {code}): check the key that the "
                f"engineApiKey setting names ({self.options.api_key}; by default the {API_KEY_ENV} variable)"
            )
        if code == 404:
            raise RemoteError(
                f"the engine server at {self.url} has no {path} (HTTP 404): check that the URL is the server's "
                "base URL (llama-server: http(s)://host:port; an OpenAI-compatible one: ending in /v1)"
            )
        if "exceed_context_size" in detail or "exceeds the available context" in detail:
            raise ContextOverflowError(f"the engine server's context is too small for the request: {detail}")
        raise RemoteError(f"the engine server at {self.url} answered HTTP {code} on {path}: {detail}")

    def _json(self, response: requests.Response) -> Any:
        with response:
            if "html" in response.headers.get("Content-Type", ""):
                raise RemoteError(
                    f"the engine server at {self.url} answered with an HTML page, not JSON: check that the URL "
                    "reaches the engine server itself, not a proxy's or a login page"
                )
            try:
                return response.json()
            except ValueError as exc:
                raise RemoteError(
                    f"the engine server at {self.url} answered something that is not JSON "
                    f"({response.text[:80]!r}): check that the URL is an engine server's"
                ) from exc


class Stream:
    """The JSON events of a server-sent event response, read on a thread of its own. `events` yields
    each, or None every `_POLL_S` of silence so the caller can check whether to stop; `close` ends
    the connection (the server then stops the task)."""

    def __init__(self, client: ServerClient, response: requests.Response) -> None:
        self._client = client
        self._response = response
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="coderag-engine-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._response.iter_lines():
                line = raw.decode("utf-8", "replace")
                if line.startswith("data:"):
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    self._queue.put(("data", data))
                elif line.startswith("error:"):
                    self._queue.put(("error", line[6:].strip()))
                elif line.lstrip().startswith("<"):
                    self._queue.put(("html", line))
                    break
            self._queue.put(("end", None))
        except Exception as exc:  # the connection broke, or `close` cut it
            self._queue.put(("broken", exc))

    def events(self) -> Iterator[dict[str, Any] | None]:
        url = self._client.url
        while True:
            try:
                kind, value = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                yield None
                continue
            if kind == "data":
                try:
                    event = json.loads(value)
                except ValueError as exc:
                    raise RemoteError(
                        f"the engine server at {url} sent an event that is not JSON ({value[:80]!r})"
                    ) from exc
                if not isinstance(event, dict):
                    raise RemoteError(f"the engine server at {url} sent an event that is not an object")
                yield event
            elif kind == "error":
                raise RemoteError(f"the engine server at {url} reported an error: {value[:300]}")
            elif kind == "html":
                raise RemoteError(
                    f"the engine server at {url} answered with an HTML page, not events: check that the URL reaches "
                    "the engine server itself"
                )
            elif kind == "broken" and not self._closed:
                raise RemoteUnavailable(
                    f"the connection to the engine server at {url} broke during an answer ({_reason(value)}): check "
                    "that the server still runs"
                )
            else:
                return

    def close(self) -> None:
        self._closed = True
        self._response.close()


def _reason(exc: BaseException) -> str:
    """The innermost reason of a requests error ('Connection refused', 'Name or service not known')."""
    while exc.__context__ is not None and not isinstance(exc, OSError):
        exc = exc.__context__
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if known in text:
            return known.lower()
    return text[:200]


def _detail(response: requests.Response) -> str:
    """What an error answer says: llama-server's {"error": {"message"}}, else its text."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
    except ValueError:
        pass
    if "html" in response.headers.get("Content-Type", ""):
        return "an HTML page (a proxy or gateway between the daemon and the engine server?)"
    return response.text[:300] or response.reason or ""
