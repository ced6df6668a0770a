"""Serving LSP to one client over a socket that only the user's own programs can use.

The daemon reads any file under the workspace roots a client names, so whoever connects can read
the user's files. A Unix domain socket (`--socket`) is locked by the file system: mode 0600 in a
directory of mode 0700. TCP (`--tcp`, 127.0.0.1) is open to every local user, so there the client's
first message must be `initialize` carrying a random token that the daemon wrote to a file only the
user can read, as a Jupyter server hands its token over in a runtime file of mode 0600 (an LSP
client cannot add a header to a message, but every one can set initializationOptions). Every
connection is read by the same message reader as stdin (stdio.serve_messages), so a wrong
Content-Length costs only its own message here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import secrets
import signal
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platformdirs import user_cache_dir
from pygls.exceptions import JsonRpcParseError

from .framing import MessageReader, MessageTooLong
from .stdio import MessageStream, handle_message, serve_messages

if TYPE_CHECKING:
    from .server import CoderagServer

log = logging.getLogger(__name__)

TOKEN_OPTION = "authToken"
"""The key in `initialize`'s initializationOptions that carries the token."""
REFUSED = -32000
"""The JSON-RPC error code of a connection the daemon refuses (then it closes the connection)."""
SOCKET_NAME = "lsp.sock"
_PARSE_ERROR = -32700
_FIRST_MESSAGE_BYTES = 1 << 20
"""The most a client may send as its first message over TCP, before it has shown the token."""
_FIRST_MESSAGE_SECONDS = 30.0
_LINGER_SECONDS = 2.0
"""How long a refused client's further bytes are read and dropped before the connection closes."""


class TransportError(Exception):
    """The daemon cannot listen where it was asked to (a bad path, a directory others can open, a port in use)."""


def runtime_dir() -> Path:
    """Where sockets and token files go unless told otherwise: under $XDG_RUNTIME_DIR (the user's
    own, removed at logout), else under the user cache directory."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    return Path(base) / "coderag-daemon" if os.path.isabs(base) else Path(user_cache_dir("coderag-daemon")) / "run"


def private_dir(path: Path) -> None:
    """Make `path` a directory of mode 0700, or check that it is one of the user's that no one else
    can open. A socket's own mode is not honoured on every system; its directory's is."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        raise TransportError(f"cannot use the directory {path}: {exc.strerror or exc}") from None
    if st.st_uid != os.geteuid():
        raise TransportError(f"{path} belongs to another user (uid {st.st_uid}): choose a directory of your own")
    if st.st_mode & 0o077:
        raise TransportError(
            f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}): "
            f"run `chmod 700 {path}` or choose another directory"
        )


@dataclasses.dataclass(frozen=True)
class _Made:
    """A file the daemon made, removed on exit unless something else has taken its place."""

    path: Path
    identity: tuple[int, int]

    @classmethod
    def at(cls, path: Path) -> _Made:
        st = path.lstat()
        return cls(path, (st.st_dev, st.st_ino))

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = self.path.lstat()
            if (st.st_dev, st.st_ino) == self.identity:
                self.path.unlink()


@dataclasses.dataclass
class Listener:
    """A socket listening for the daemon's one client; leaving the `with` block closes it and removes
    the files made for it."""

    sock: socket.socket
    address: str
    token: str | None = None
    """What a client must show in its `initialize` (TCP); None where the file system keeps others out."""
    files: list[_Made] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        # From before the first file is made: a SIGTERM then ends the process through __exit__,
        # which removes the files.
        signal.signal(signal.SIGTERM, _exit)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.sock.close()
        for made in self.files:
            made.remove()


def _exit(signum: int, frame: object) -> None:
    sys.exit(0)


@contextlib.contextmanager
def _sigterm_held() -> Iterator[None]:
    """Hold a SIGTERM back while a file is made and recorded: one that arrived in between would end
    the process before the listener knew of the file, and leave it behind. It comes once the block
    ends, and the listener's exit removes the file."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def listen_unix(path: Path) -> Listener:
    """A Unix domain socket at `path` (mode 0600) in a private directory. A socket left behind by a
    daemon that was killed is replaced; one that a live daemon listens on is not."""
    private_dir(path.parent)
    _clear_stale_socket(path)
    listener = Listener(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), str(path))
    try:
        with _sigterm_held():
            listener.sock.bind(str(path))
            listener.files.append(_Made.at(path))
        os.chmod(path, 0o600)
        listener.sock.listen()
    except OSError as exc:
        listener.__exit__()
        raise TransportError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    print(f"coderag-daemon: serving LSP on the Unix socket {path}", file=sys.stderr, flush=True)
    return listener


def _clear_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise TransportError(f"{path} exists and is not a socket: remove it or choose another path")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:  # a live daemon ignores a silent connection
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()
            return
    raise TransportError(f"another daemon is serving on {path}: choose another path with --socket PATH")


def listen_tcp(port: int, token_file: Path | None) -> Listener:
    """127.0.0.1:`port` (0: any free port), with a new token written to `token_file` (mode 0600;
    default: tcp-PORT.token in the runtime directory)."""
    try:
        sock = socket.create_server(("127.0.0.1", port))
    except OSError as exc:
        raise TransportError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    port, token = sock.getsockname()[1], secrets.token_urlsafe(32)
    listener = Listener(sock, f"127.0.0.1:{port}", token)
    path = token_file or runtime_dir() / f"tcp-{port}.token"
    try:
        with _sigterm_held():
            listener.files.append(_write_token(path, token))
    except BaseException:
        listener.__exit__()
        raise
    print(
        f"coderag-daemon: serving LSP on 127.0.0.1:{port}; the client's initialize must carry the token in "
        f"{path} as initializationOptions.{TOKEN_OPTION}",
        file=sys.stderr,
        flush=True,
    )
    return listener


def _write_token(path: Path, token: str) -> _Made:
    """The token alone (no newline) in a new file of mode 0600 in a private directory: a file that was
    there is replaced rather than reused, so nobody keeps an old handle on what it holds now."""
    private_dir(path.parent)
    try:
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise TransportError(f"cannot write the token file {path}: {exc.strerror or exc}") from None
    with open(fd, "w", encoding="ascii") as out:
        out.write(token)
    return _Made.at(path)


def serve_socket(server: CoderagServer, listener: Listener) -> None:
    """Serve the first client until it exits or disconnects."""
    try:
        asyncio.run(_serve(server, listener))
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


class _Refused(Exception):
    """Why a connection gets one error and is closed, and the id of the request it answers."""

    def __init__(self, reason: str, msg_id: int | str | None = None, code: int = REFUSED) -> None:
        super().__init__(reason)
        self.reason, self.msg_id, self.code = reason, msg_id, code


async def _serve(server: CoderagServer, listener: Listener) -> None:
    loop = asyncio.get_running_loop()
    finished = loop.create_future()

    def finish(exc: BaseException | None = None) -> None:
        if finished.done():
            return
        if exc is None:
            finished.set_result(None)
        else:
            finished.set_exception(exc)

    async def client(reader: MessageStream, writer: asyncio.StreamWriter) -> None:
        messages = MessageReader(reader)
        try:
            first = await _first_message(messages, listener.token)
            if finished.done() or server.protocol.writer is not None:
                raise _Refused("the daemon already serves a client", _request_id(first))
        except (EOFError, OSError):  # gone before its first message, like a check that the socket is alive
            writer.close()
            return
        except _Refused as refused:
            log.warning("refused a client on %s: %s", listener.address, refused.reason)
            await _refuse(reader, writer, refused)
            return
        server.protocol.set_writer(writer)
        try:
            handle_message(server, first)
            await serve_messages(server, messages)
            log.info("the client disconnected")
        except BaseException as exc:  # the client's `exit` ends the daemon (SystemExit)
            finish(exc)
            return
        finish()

    def protocol() -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(MessageStream(), client)  # type: ignore[arg-type]

    if listener.sock.family == socket.AF_UNIX:
        server_socket = await loop.create_unix_server(protocol, sock=listener.sock)
    else:
        server_socket = await loop.create_server(protocol, sock=listener.sock)
    async with server_socket:
        await finished


async def _first_message(messages: MessageReader, token: str | None) -> Any:
    """The client's first message: until it arrives the connection is not the daemon's client. With a
    token it must be `initialize` with the token in initializationOptions, which is taken out there
    (the settings never see it, nor any log). Raises _Refused, EOFError."""
    try:
        if token is None:
            return await messages.read()
        async with asyncio.timeout(_FIRST_MESSAGE_SECONDS):
            message = await messages.read(max_length=_FIRST_MESSAGE_BYTES)
    except JsonRpcParseError as exc:
        raise _Refused(f"the first message is not JSON: {exc.message}", code=_PARSE_ERROR) from None
    except MessageTooLong as exc:
        raise _Refused(f"the first message is too long: {exc}") from None
    except TimeoutError:
        raise _Refused(f"no message within {_FIRST_MESSAGE_SECONDS:.0f} seconds") from None
    msg_id = _request_id(message)
    if not isinstance(message, dict) or message.get("method") != "initialize" or msg_id is None:
        raise _Refused(
            f"unauthorized: the first message must be the initialize request with the token in "
            f"initializationOptions.{TOKEN_OPTION}",
            msg_id,
        )
    params = message.get("params")
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    shown = options.pop(TOKEN_OPTION, None) if isinstance(options, dict) else None
    if not isinstance(shown, str):
        raise _Refused(f"unauthorized: initialize has no initializationOptions.{TOKEN_OPTION}", msg_id)
    if not hmac.compare_digest(shown.encode(), token.encode()):
        raise _Refused(f"unauthorized: initializationOptions.{TOKEN_OPTION} is not the daemon's token", msg_id)
    return message


def _request_id(message: Any) -> int | str | None:
    value = message.get("id") if isinstance(message, dict) else None
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, refused: _Refused) -> None:
    """One error, then the connection closes. What else the client sent is read and dropped first (for
    a moment): a socket closed with unread bytes is reset, and the reset can destroy the error on its way."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": refused.msg_id, "error": {"code": refused.code, "message": refused.reason}}
    ).encode()
    writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        writer.write_eof()
        async with asyncio.timeout(_LINGER_SECONDS):
            while await reader.read(65536):
                pass
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()
