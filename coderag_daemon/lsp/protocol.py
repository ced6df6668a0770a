"""pygls's LSP protocol, made to answer malformed messages as JSON-RPC 2.0 asks, and to leave the
documents to the daemon.

pygls drops, with a line on stderr, a request whose params lsprotocol cannot read, a message that is
not a JSON-RPC 2.0 request, notification or response, and a batch: the client waits for an answer
forever. Here each gets an error reply (InvalidParams -32602, InvalidRequest -32600; id null when it
cannot be read); a notification with bad params gets none and is logged instead.

pygls applies every didOpen, didChange and didClose to a copy of the document in its own workspace
before the daemon's handler runs: each keystroke edited the text twice (and left a finished future
in pygls's table of requests), and an edit of a document never opened failed there (KeyError) before
the daemon could refuse it. The daemon's DocumentStore is the only copy: those notifications go
straight to the daemon's handlers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import re
from typing import TYPE_CHECKING, Any

import attrs
from cattrs import transform_error
from cattrs.v import format_exception
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.protocol import LanguageServerProtocol

from .framing import dumps

if TYPE_CHECKING:
    from cattrs import Converter
    from pygls.lsp.server import LanguageServer
    from pygls.protocol.json_rpc import MsgId

log = logging.getLogger(__name__)
_pygls_log = logging.getLogger("pygls.protocol.json_rpc")
"""The lines pygls's own `_send_data` logs keep their logger."""

_DOCUMENT_SYNC = (
    types.TEXT_DOCUMENT_DID_OPEN,
    types.TEXT_DOCUMENT_DID_CHANGE,
    types.TEXT_DOCUMENT_DID_CLOSE,
    types.NOTEBOOK_DOCUMENT_DID_OPEN,
    types.NOTEBOOK_DOCUMENT_DID_CHANGE,
    types.NOTEBOOK_DOCUMENT_DID_CLOSE,
)
"""pygls's built-in handlers that keep documents in its workspace; without them, pygls calls the
handler the daemon registered for the method (none for notebooks: their notifications are ignored)."""


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A message that cannot be handled, and the error that says why."""

    error: JsonRpcException
    msg_id: MsgId | None = None
    reply: bool = True
    """False for a notification: nothing may answer it, so the log says why it was ignored."""
    method: str | None = None


class DaemonProtocol(LanguageServerProtocol):
    """The protocol class of the daemon's server (`protocol_cls`)."""

    def __init__(self, server: LanguageServer, converter: Converter) -> None:
        super().__init__(server, converter)
        for method in _DOCUMENT_SYNC:
            self.fm.builtin_features.pop(method, None)

    def structure_message(self, data: dict[str, Any]) -> Any:
        """The message as lsprotocol types, or Rejected. pygls calls this for every object in a
        message; one without "jsonrpc" is left as it is (handle_message rejects it at the top)."""
        if "jsonrpc" not in data:
            return data
        if (problem := _envelope_problem(data)) is not None:
            return Rejected(JsonRpcInvalidRequest(problem), _readable_id(data))
        method = data.get("method")
        message_type = self.get_message_type(method) if method is not None else None
        if message_type is None:  # a response, or one of the daemon's own methods: pygls reads it
            return super().structure_message(data)
        try:
            return self._converter.structure(data, message_type)
        except Exception as exc:
            return Rejected(
                JsonRpcInvalidParams(f"invalid params for {method}: {_reason(exc)}"),
                _readable_id(data),
                reply="id" in data,
                method=method,
            )

    def handle_message(self, message: Any) -> None:
        if isinstance(message, Rejected):
            self._reject(message)
        elif attrs.has(type(message)):  # structured by structure_message
            super().handle_message(message)
        else:
            self._reject(_not_a_message(message))

    def send_error(self, msg_id: MsgId | None, error: JsonRpcException) -> None:
        """An error response. pygls's own would leave out an id that is None; JSON-RPC wants it null."""
        response = {
            "jsonrpc": self.VERSION,
            "id": msg_id,
            "error": self._converter.unstructure(error.to_response_error()),
        }
        self._send_data(response)

    def _send_data(self, data: Any) -> None:
        """pygls's, with the body written by framing.dumps (orjson) instead of json.dumps: every
        response, status and chat delta goes through here, on the event loop."""
        if not data:
            return
        if self.writer is None:
            _pygls_log.error("Unable to send data, no available transport!")
            return
        try:
            body = dumps(data, self._serialize_message)
            if _pygls_log.isEnabledFor(logging.INFO):
                _pygls_log.info("Sending data: %s", body.decode())
            if self._include_headers:
                body = (
                    f"Content-Length: {len(body)}\r\nContent-Type: {self.CONTENT_TYPE}; charset={self.CHARSET}\r\n\r\n"
                ).encode() + body
            res = self.writer.write(body)
            if inspect.isawaitable(res):
                asyncio.ensure_future(res)
        except BrokenPipeError:
            _pygls_log.exception("Error sending data. BrokenPipeError", exc_info=True)
            raise
        except Exception as error:
            _pygls_log.exception("Error sending data", exc_info=True)
            self._server._report_server_error(error, JsonRpcInternalError)

    def _reject(self, rejected: Rejected) -> None:
        if rejected.reply:
            self.send_error(rejected.msg_id, rejected.error)
        if not rejected.reply or rejected.msg_id is None:  # nothing the client can pair with its message
            log.warning("ignored %s: %s", rejected.method or "a message", rejected.error.message)


def _envelope_problem(data: dict[str, Any]) -> str | None:
    """Why `data` is not a JSON-RPC 2.0 request, notification or response; None if it is one."""
    if data.get("jsonrpc") != "2.0":
        return 'not JSON-RPC 2.0: "jsonrpc" must be "2.0"'
    if "method" in data:
        if not isinstance(data["method"], str):
            return '"method" must be a string'
        if "id" in data and _readable_id(data) is None:
            return 'a request\'s "id" must be a number or a string'
        return None
    if "id" not in data or ("result" not in data and "error" not in data):
        return 'no "method" (a request or notification), nor an "id" with a "result" or an "error" (a response)'
    return None


def _not_a_message(value: Any) -> Rejected:
    """A JSON value that never became a message: an object without "jsonrpc", a batch, a scalar."""
    if isinstance(value, list):
        return Rejected(JsonRpcInvalidRequest("a batch (JSON array): LSP has none, send each message on its own"))
    if isinstance(value, dict):
        return Rejected(JsonRpcInvalidRequest('not JSON-RPC 2.0: "jsonrpc": "2.0" is missing'), _readable_id(value))
    return Rejected(JsonRpcInvalidRequest("not a JSON-RPC message: expected an object"))


def _readable_id(data: dict[str, Any]) -> MsgId | None:
    value = data.get("id")
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _reason(exc: Exception) -> str:
    """What lsprotocol found wrong, and where, in the message's own (camelCase) names:
    "Position.line should be in range [0:2147483647], but was -1. (at params.position)"."""

    def describe(error: BaseException, kind: Any) -> str:  # lsprotocol's range and enum checks say it best
        return str(error) if isinstance(error, ValueError) and error.args else format_exception(error, kind)

    reasons = []
    for line in transform_error(exc, path="", format_exception=describe):
        what, _, where = line.rpartition(" @ ")
        where = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), where.lstrip("."))
        reasons.append(f"{what} (at {where})" if where else what)
    return "; ".join(reasons)
