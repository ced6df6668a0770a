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

from pygls.io_ import StdoutWriter, run_async
from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)


def serve_stdio(server: LanguageServer) -> None:
    """Serve until the client exits or closes stdin."""
    if not _pollable_alone(sys.stdin.buffer.fileno(), sys.stdout.buffer.fileno()):
        server.start_io()
        return
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    try:
        asyncio.run(_read_messages(server))
    except BrokenPipeError:
        log.error("the client closed the connection")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


async def _read_messages(server: LanguageServer) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
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
