"""Serving LSP over stdin/stdout with the event loop reading the pipe itself.

pygls's stdio server reads every header line and body through a thread pool: three hand-offs
between threads per message. While the model's threads hold both cores, each hand-off waits for
the scheduler, and that wait was most of a `didChange` round trip's tail. An asyncio pipe reader
wakes the event loop once when bytes arrive. The messages are read by framing.MessageReader rather
than pygls's loop, which a single wrong Content-Length leaves deaf.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

from pygls.exceptions import JsonRpcException, JsonRpcParseError
from pygls.io_ import StdinAsyncReader

from .framing import MessageReader

if TYPE_CHECKING:
    from .server import CoderagServer

log = logging.getLogger(__name__)

_HEADER_ROOM = 64
"""Bytes kept at the end of an over-long line: more than a Content-Length header takes."""


def serve_stdio(server: CoderagServer) -> None:
    """Serve until the client exits or closes stdin."""
    server.protocol.set_writer(_Stdout(sys.stdout.buffer))
    try:
        asyncio.run(_read_messages(server))
    except BrokenPipeError:
        log.error("the client closed the connection")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


class _Stdout:
    """stdout as pygls writes to it. The client's `exit` closes it; a notification another thread
    queued just before (the model's status) then has nobody to go to and is dropped."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def close(self) -> None:
        self._out.close()

    def write(self, data: bytes) -> None:
        if not self._out.closed:
            self._out.write(data)
            self._out.flush()


class MessageStream(asyncio.StreamReader):
    """A byte stream as the message reader reads it. A line longer than the stream's limit (64 KiB) cannot
    be a header: it is returned in pieces instead of ending the stream with an error, and skipped as
    garbage. Each piece stops short of the line's last bytes, where the next header may be glued to
    the left-overs of a body whose Content-Length was too short."""

    async def readline(self) -> bytes:
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end of the stream
            return exc.partial
        except asyncio.LimitOverrunError as exc:  # exc.consumed bytes of the line are in the buffer
            return await self.readexactly(exc.consumed - _HEADER_ROOM)  # the reader skips and logs them


async def _read_messages(server: CoderagServer) -> None:
    stdin = sys.stdin.buffer
    if _pollable_alone(stdin.fileno(), sys.stdout.buffer.fileno()):
        pipe = MessageStream()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(pipe), stdin)
        await serve_messages(server, MessageReader(pipe))
    else:
        await serve_messages(server, MessageReader(StdinAsyncReader(stdin, server.thread_pool)))


async def serve_messages(server: CoderagServer, messages: MessageReader) -> None:
    """Read and handle messages until the stream ends (stdin here, a socket in tcp.py)."""
    while True:
        try:
            data = await messages.read()
        except asyncio.IncompleteReadError:  # before EOFError, which it is a kind of
            log.error("the client's stream ended in the middle of a message")
            return
        except EOFError:
            return
        except JsonRpcParseError as exc:
            server.protocol.send_error(None, exc)
            continue
        handle_message(server, data)


def handle_message(server: CoderagServer, data: Any) -> None:
    """Handle one message read from the client (a JSON value)."""
    protocol = server.protocol
    try:  # only the message itself is structured, not objects inside it that have a "jsonrpc"
        protocol.handle_message(protocol.structure_message(data) if isinstance(data, dict) else data)
    except Exception as exc:
        log.exception("Unable to handle message")
        server.report_server_error(exc, JsonRpcException)


def _pollable_alone(stdin_fd: int, stdout_fd: int) -> bool:
    """Whether stdin is a pipe or socket of its own. The loop cannot poll a regular file (a recorded
    session replayed), and it makes stdin non-blocking: where stdout is the same open file (a
    terminal, one socket for both ways), writing a reply could then fail half-way."""
    if os.name != "posix":
        return False
    st_in, st_out = os.fstat(stdin_fd), os.fstat(stdout_fd)
    kind_ok = stat.S_ISFIFO(st_in.st_mode) or stat.S_ISSOCK(st_in.st_mode)
    return kind_ok and (st_in.st_dev, st_in.st_ino) != (st_out.st_dev, st_out.st_ino)
