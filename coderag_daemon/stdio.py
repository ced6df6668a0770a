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
    if not _is_pipe(sys.stdin.buffer.fileno()):
        server.start_io()  # a regular file (replaying a recorded session): the loop cannot poll it
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


def _is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return os.name == "posix" and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode))
