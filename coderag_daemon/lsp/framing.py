"""Reading LSP messages (a Content-Length header, a blank line, a JSON body) from a byte stream, and
finding the next message after a broken one; the JSON of message bodies, both ways.

pygls's reader trusts each Content-Length and accepts a header only at the start of a line: after one
wrong length the next header is glued to the body's left-over bytes and never read, and the daemon
stays up but deaf. Here a header is found anywhere in a line, and a body that is not JSON is searched
for the header that a too-long length swallowed, which is then read again.

Bodies go through orjson, faster than json both ways (bench/jsonrpc_bench.py). Where orjson refuses
what json takes (NaN, a BOM, a lone surrogate, an integer past 64 bits, a non-string key) or reads it
otherwise, json does the work: every message reads as it did, and is written as the same JSON, in
UTF-8 rather than \\u escapes; only NaN and the infinities, which are not JSON, are written as null.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any

import orjson
from pygls.exceptions import JsonRpcParseError

if TYPE_CHECKING:
    from collections.abc import Callable

    from pygls.io_ import AsyncReader

log = logging.getLogger(__name__)

_HEADER = re.compile(rb"Content-Length: (\d+)\r\n")
_NAME = b"Content-Length: "
_PREVIEW = 80
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
"""These go to `default`, as json.dumps sends them."""
_INT64 = 2.0**63
"""orjson reads an integer past 64 bits as a float; json keeps it an int."""


def loads(body: bytes) -> Any:
    """A message body's JSON value, as json.loads reads it; raises ValueError if it is not JSON."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)
    return json.loads(body) if _has_large_float(value) else value


def dumps(value: Any, default: Callable[[Any], Any]) -> bytes:
    """The UTF-8 JSON of a message, `default` converting what JSON has no type for (as json.dumps's)."""
    try:
        return orjson.dumps(value, default=default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, default=default).encode()


def _has_large_float(value: Any) -> bool:
    """Whether a parsed value holds a float of 2**63 or more: perhaps an integer orjson widened.
    A microsecond or two on a didChange: only containers are stacked, and orjson's types are exact."""
    stack: list[Any] = [[value]]
    while stack:
        container = stack.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is dict or kind is list:
                stack.append(item)
            elif kind is float and not -_INT64 < item < _INT64:
                return True
    return False


class MessageTooLong(ValueError):
    """A Content-Length over the limit the caller set; its body is left unread."""


class MessageReader:
    """The messages on a stream, in order, as JSON values; what lies between them is skipped and logged."""

    def __init__(self, stream: AsyncReader) -> None:
        self._stream = stream
        self._pending = b""  # read into a body too far, to be read again

    async def read(self, max_length: int | None = None) -> Any:
        """The next message's JSON. Raises JsonRpcParseError for a body that is not JSON, EOFError at
        the end of the stream, asyncio.IncompleteReadError when the stream ends inside a body, and
        MessageTooLong for a Content-Length over `max_length` (a client not trusted yet)."""
        length = await self._header()
        if max_length is not None and length > max_length:
            raise MessageTooLong(f"a message of {length} bytes, over the {max_length} allowed")
        body = await self._readexactly(length)
        with contextlib.suppress(ValueError):
            return loads(body)
        if (resume := _next_header(body)) is not None:  # the length was too long and took in the next header
            self._pending, body = body[resume:] + self._pending, body[:resume]
            with contextlib.suppress(ValueError):
                message = loads(body)
                log.warning("Content-Length %d was too long: the message is %d bytes", length, len(body))
                return message
        log.warning("skipped a message body that is not JSON (%d bytes): %r", len(body), body[:_PREVIEW])
        raise JsonRpcParseError(f"the body ({len(body)} bytes) is not JSON")

    async def _header(self) -> int:
        """The Content-Length of the next header block, read up to the blank line that ends it."""
        length: int | None = None
        skipped, preview = 0, b""
        while True:
            line = await self._readline()
            if not line:
                if skipped:
                    log.warning("skipped %d bytes at the end of the stream: %r", skipped, preview)
                raise EOFError
            if length is not None and not line.strip():
                if preview.strip():
                    log.warning("skipped %d bytes from the client that were not an LSP message: %r", skipped, preview)
                return length
            if (match := _HEADER.search(line)) is not None:
                garbage, length = line[: match.start()], int(match.group(1))
            else:
                garbage = line if length is None else b""  # after a Content-Length: another header
            skipped += len(garbage)
            preview = (preview + garbage)[:_PREVIEW]

    async def _readline(self) -> bytes:
        if not self._pending:
            return await self._stream.readline()
        end = self._pending.find(b"\n") + 1
        if end:
            line, self._pending = self._pending[:end], self._pending[end:]
            return line
        line, self._pending = self._pending, b""
        return line + await self._stream.readline()

    async def _readexactly(self, n: int) -> bytes:
        data, self._pending = self._pending[:n], self._pending[n:]
        if len(data) < n:
            data += await self._stream.readexactly(n - len(data))
        if len(data) < n:  # a file's read() returns what is left at its end
            raise asyncio.IncompleteReadError(data, n)
        return data


def _next_header(body: bytes) -> int | None:
    """Where in a body that is not JSON the next message's header starts: a whole header line, or
    the start of one cut off by the body's end (the rest is still on the stream)."""
    if (match := _HEADER.search(body)) is not None:
        return match.start()
    if (at := body.rfind(_NAME)) >= 0 and re.fullmatch(rb"\d*\r?", body[at + len(_NAME) :]):
        return at
    cut = next((k for k in range(len(_NAME) - 1, 0, -1) if body.endswith(_NAME[:k])), 0)
    return len(body) - cut if cut else None
