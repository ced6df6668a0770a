"""Serving LSP over stdin/stdout with the event loop reading the pipe itself.

pygls's stdio server reads every header line and body through a thread pool: three hand-offs
between threads per message. While the model's threads hold both cores, each hand-off waits for
the scheduler, and that wait was most of a `didChange` round trip's tail. An asyncio pipe reader
wakes the event loop once when bytes arrive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import threading
from typing import BinaryIO

from pygls.io_ import StdinAsyncReader, run_async
from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)


def serve_stdio(server: LanguageServer) -> None:
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


class _MessageStream(asyncio.StreamReader):
    """stdin as pygls's message loop reads it. A line longer than the stream's limit (64 KiB) is
    skipped instead of ending the stream with an error: it cannot be a header, and pygls's loop
    already skips lines that are not, so garbage before a message costs only that line."""

    async def readline(self) -> bytes:
        try:
            return await super().readline()
        except ValueError:  # the over-long part is already dropped from the buffer
            log.warning("skipped an over-long line on stdin: not an LSP header")
            return b"(skipped)\r\n"


async def _read_messages(server: LanguageServer) -> None:
    stdin = sys.stdin.buffer
    if _pollable_alone(stdin.fileno(), sys.stdout.buffer.fileno()):
        reader: _MessageStream | StdinAsyncReader = _MessageStream()
        await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
    else:
        reader = StdinAsyncReader(stdin, server.thread_pool)
    try:
        await run_async(stop_event=threading.Event(), reader=reader, protocol=server.protocol, logger=log,
                        error_handler=server.report_server_error)
    except asyncio.IncompleteReadError:
        log.error("stdin closed in the middle of a message")


def _pollable_alone(stdin_fd: int, stdout_fd: int) -> bool:
    """Whether stdin is a pipe or socket of its own. The loop cannot poll a regular file (a recorded
    session replayed), and it makes stdin non-blocking: where stdout is the same open file (a
    terminal, one socket for both ways), writing a reply could then fail half-way."""
    if os.name != "posix":
        return False
    st_in, st_out = os.fstat(stdin_fd), os.fstat(stdout_fd)
    kind_ok = stat.S_ISFIFO(st_in.st_mode) or stat.S_ISSOCK(st_in.st_mode)
    return kind_ok and (st_in.st_dev, st_in.st_ino) != (st_out.st_dev, st_out.st_ino)
