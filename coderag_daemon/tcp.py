"""Serving LSP to one client over TCP, on 127.0.0.1 only (`--tcp PORT`).

The socket is read by the same message reader as stdin (stdio.serve_messages), so a wrong
Content-Length costs only its own message here too; pygls's TCP server would stop hearing the client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .stdio import MessageStream, serve_messages

if TYPE_CHECKING:
    from .server import CoderagServer

log = logging.getLogger(__name__)


def serve_tcp(server: CoderagServer, port: int) -> None:
    """Listen on 127.0.0.1:`port`; serve the first client until it exits or disconnects."""
    try:
        asyncio.run(_serve(server, port))
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


async def _serve(server: CoderagServer, port: int) -> None:
    finished = asyncio.get_running_loop().create_future()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if finished.done() or server.protocol.writer is not None:
            log.warning("a second client on port %d refused: the daemon serves one editor", port)
            writer.close()
            return
        server.protocol.set_writer(writer)
        try:
            await serve_messages(server, reader)  # type: ignore[arg-type]
            log.info("the client disconnected")
        except BaseException as exc:  # the client's `exit` ends the daemon (SystemExit)
            if not finished.done():
                finished.set_exception(exc)
            return
        if not finished.done():
            finished.set_result(None)

    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: asyncio.StreamReaderProtocol(MessageStream(), client), "127.0.0.1", port)
    log.info("serving LSP on 127.0.0.1:%d", port)
    async with listener:
        await finished
