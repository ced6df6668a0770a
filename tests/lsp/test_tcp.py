"""The socket transports. `--tcp PORT` (127.0.0.1): a client's first message must be `initialize` with the
token the daemon wrote to a file only the user can read; any other connection gets one error and is
closed, and cannot read a file. `--socket`: a Unix domain socket of mode 0600 in a directory of mode 0700.
Both serve one client with the message reader of stdin, and remove their files on exit."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from coderag_daemon.lsp import sockets as tcp
from coderag_daemon.workspace.documents import path_to_uri

from .conftest import SERVER
from .test_stdio import _ASK, DAEMON, _frame, _responses, _session

_MARKER = "kept-out-of-reach-4f1c9a"
_TOKEN = "authToken"  # the initializationOptions key of the handshake (docs/PROTOCOL.md)
_REFUSED = -32000  # the error of a refused connection


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(ready: Any, daemon: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while not ready():
        assert daemon.poll() is None, f"the daemon ended before {what}: {daemon.stderr.read().decode()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _start_tcp(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    """A daemon on `--tcp PORT` with nothing else said: its token goes under $XDG_RUNTIME_DIR."""
    (runtime := tmp_path / "xdg").mkdir(mode=0o700)
    port = _free_port()
    daemon = subprocess.Popen(
        [*DAEMON, "--tcp", str(port)], stderr=subprocess.PIPE, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    )
    return daemon, port, runtime / "coderag-daemon" / f"tcp-{port}.token"


def _connect(port: int, daemon: subprocess.Popen) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            assert daemon.poll() is None and time.monotonic() < deadline, "the daemon never listened"
            time.sleep(0.1)


def _connect_unix(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(30)
    client.connect(str(path))
    return client


def _exchange(client: socket.socket, data: bytes) -> bytes:
    """Send `data`, then read until the daemon closes the connection."""
    client.sendall(data)
    client.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    return received


def _whole_session(client: socket.socket, daemon: subprocess.Popen, data: bytes) -> None:
    """Play a whole session (initialize, a request, shutdown, exit): every request is answered and
    the daemon ends cleanly."""
    with client:
        received = _exchange(client, data)
    assert sorted(_responses(received)) == [1, 2, 3]
    assert daemon.wait(timeout=30) == 0


def _with_token(session: bytes, token: str) -> bytes:
    """The session with the token in its initialize (the first message)."""
    second = session.index(b"Content-Length", 1)
    message = json.loads(session[:second].split(b"\r\n\r\n", 1)[1])
    message["params"]["initializationOptions"] = {_TOKEN: token}
    return _frame(message) + session[second:]


def _private_project(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    root.mkdir()
    (root / "notes.py").write_text(f'SECRET = "{_MARKER}"\n')
    return root


def _intrude(intruder: socket.socket, root: Path, first: bytes) -> _Messages:
    """What a client sending `first` gets. If the connection stays open, it goes on as if it got in:
    it initializes and searches the workspace's files."""
    messages = _Messages(intruder)
    intruder.sendall(first)
    if (answer := messages.response()) is not None:
        follow_up = [_initialize(root, msg_id=5)] if "error" in answer else []  # else it was initialized
        follow_up += [
            {"jsonrpc": "2.0", "method": "initialized", "params": {}},
            {"jsonrpc": "2.0", "id": 2, "method": "coderag/search", "params": {"query": "secret kept reach"}},
        ]
        with contextlib.suppress(OSError):  # the daemon may have closed the connection already
            intruder.sendall(b"".join(_frame(m) for m in follow_up))
        messages.response(2)
    return messages


def _initialize(root: Path, options: dict | None = None, method: str = "initialize", msg_id: int = 1) -> dict:
    params: dict[str, Any] = {"capabilities": {}, "rootUri": path_to_uri(root)}
    if options is not None:
        params["initializationOptions"] = options
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}


_WRONG = "A" * 43  # as long as a real token


@pytest.mark.parametrize(
    "first, answer_id, code",
    [
        (lambda root: _frame(_initialize(root)), 1, _REFUSED),
        (lambda root: _frame(_initialize(root, {"nCtx": 4096})), 1, _REFUSED),
        (lambda root: _frame(_initialize(root, {_TOKEN: _WRONG})), 1, _REFUSED),
        (lambda root: _frame(_initialize(root, {_TOKEN: 12345})), 1, _REFUSED),
        (lambda root: _frame(_initialize(root, {"coderag": {_TOKEN: _WRONG}})), 1, _REFUSED),
        (lambda root: _frame(_initialize(root, {_TOKEN: _WRONG}, method="coderag/search")), 1, _REFUSED),
        (lambda root: b"Content-Length: 5\r\n\r\nhello", None, -32700),
        (lambda root: b"Content-Length: 2000000\r\n\r\n" + b" " * 1000, None, _REFUSED),
    ],
    ids=[
        "no options",
        "no token",
        "a wrong token",
        "a token that is not a string",
        "a token nested in settings",
        "another request first",
        "not JSON",
        "too long",
    ],
)
def test_a_client_without_the_token_gets_one_error_and_is_closed(
    tmp_path: Path, first: Any, answer_id: Any, code: int
) -> None:
    root = _private_project(tmp_path)
    daemon, port, token_file = _start_tcp(tmp_path)
    try:
        with _connect(port, daemon) as intruder:
            messages = _intrude(intruder, root, first(root))
            assert _MARKER not in json.dumps(messages.seen)
            [answer] = messages.seen
            assert answer["id"] == answer_id and answer["error"]["code"] == code and "result" not in answer
            assert messages.response() is None  # the daemon closed the connection
        assert daemon.poll() is None
        _until(token_file.exists, daemon, "the token file")
        # the refused connection kept no one out
        _whole_session(_connect(port, daemon), daemon, _with_token(_session(root), token_file.read_text()))
    finally:
        daemon.kill()
        stderr = daemon.stderr.read().decode() if daemon.stderr else ""
    assert "refused a client on 127.0.0.1" in stderr, stderr[-3000:]


def test_the_token_opens_a_session_end_to_end(tmp_path: Path, workspace: Path) -> None:
    """initialize with the token, didOpen, an inline completion on the tiny dense model; the token never
    reaches the settings, the client or the log, and its file is removed on exit."""
    port, token_file = _free_port(), tmp_path / "run" / "token"
    daemon = subprocess.Popen(
        [*SERVER, "--log-level", "DEBUG", "--tcp", str(port), "--token-file", str(token_file)], stderr=subprocess.PIPE
    )
    try:
        _until(token_file.exists, daemon, "the token file")
        token = token_file.read_text()
        path = workspace / "tasktrack" / "auth.py"
        with _connect(port, daemon) as client:
            messages = _Messages(client)
            client.sendall(
                b"".join(
                    _frame(m)
                    for m in (
                        _initialize(workspace, {_TOKEN: token, "maxCompletionTokens": 8}),
                        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
                        {
                            "jsonrpc": "2.0",
                            "method": "textDocument/didOpen",
                            "params": {
                                "textDocument": {
                                    "uri": path_to_uri(path),
                                    "languageId": "python",
                                    "version": 1,
                                    "text": path.read_text(),
                                }
                            },
                        },
                        {
                            "jsonrpc": "2.0",
                            "id": 2,
                            "method": "textDocument/inlineCompletion",
                            "params": {
                                "textDocument": {"uri": path_to_uri(path)},
                                "position": {"line": 10, "character": 0},
                                "context": {"triggerKind": 1},
                            },
                        },
                    )
                )
            )
            initialized = messages.response(1)
            completion = messages.response(2)
            client.sendall(
                _frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}) + _frame({"jsonrpc": "2.0", "method": "exit"})
            )
            assert messages.response(3) is not None
            assert messages.response() is None  # the daemon closed the connection
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
        stderr = daemon.stderr.read() if daemon.stderr else b""
    assert len(completion["result"]["items"]) == 1, stderr.decode()[-3000:]
    assert initialized and "inlineCompletionProvider" in initialized["result"]["capabilities"]
    assert not [m for m in messages.seen if _TOKEN in json.dumps(m)]  # no "unknown setting" about it
    assert token.encode() not in stderr and token not in json.dumps(messages.seen)
    assert not token_file.exists()


class _Messages:
    """The daemon's messages on a socket, all kept in `seen`; its requests are answered with null."""

    def __init__(self, client: socket.socket) -> None:
        self.client, self.buffer, self.seen = client, b"", []

    def response(self, msg_id: int | None = None) -> dict | None:
        """The next response (to `msg_id`, if given); None when the daemon closes the connection first."""
        while (message := self._next()) is not None:
            self.seen.append(message)
            if "method" not in message and msg_id in (None, message.get("id")):
                return message
            if "method" in message and "id" in message:
                self.client.sendall(_frame({"jsonrpc": "2.0", "id": message["id"], "result": None}))
        return None

    def _next(self) -> dict | None:
        while True:
            head, blank, rest = self.buffer.partition(b"\r\n\r\n")
            header = re.search(rb"Content-Length: (\d+)", head) if blank else None
            if header is not None and int(header.group(1)) <= len(rest):
                length = int(header.group(1))
                self.buffer = rest[length:]
                return json.loads(rest[:length])
            if not (chunk := self.client.recv(65536)):
                return None
            self.buffer += chunk


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_token_file_is_private_and_removed_on_exit(tmp_path: Path) -> None:
    """By default the token goes to tcp-PORT.token in a directory of mode 0700 under $XDG_RUNTIME_DIR."""
    daemon, port, token_file = _start_tcp(tmp_path)
    try:
        _until(token_file.exists, daemon, "the token file")
        assert _mode(token_file.parent) == 0o700 and _mode(token_file) == 0o600
        assert token_file.stat().st_uid == os.geteuid() and len(token_file.read_text()) >= 43
        _whole_session(_connect(port, daemon), daemon, _with_token(_session(tmp_path), token_file.read_text()))
    finally:
        daemon.kill()
        stderr = daemon.stderr.read().decode() if daemon.stderr else ""
    assert not token_file.exists()
    assert f"127.0.0.1:{port}; the client's initialize must carry the token in {token_file}" in stderr


def test_a_unix_socket_is_private_and_removed_on_exit(tmp_path: Path) -> None:
    """`--socket` alone: lsp.sock, mode 0600, in a new directory of mode 0700 under $XDG_RUNTIME_DIR."""
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    path = runtime / "coderag-daemon" / "lsp.sock"
    daemon = subprocess.Popen(
        [*DAEMON, "--socket"], stderr=subprocess.PIPE, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    )
    try:
        _until(path.exists, daemon, "the socket")
        assert stat.S_ISSOCK(path.lstat().st_mode) and _mode(path) == 0o600 and _mode(path.parent) == 0o700
        _whole_session(_connect_unix(path), daemon, _session(tmp_path))
    finally:
        daemon.kill()
        stderr = daemon.stderr.read().decode() if daemon.stderr else ""
    assert not path.exists(), stderr[-3000:]
    assert not list(path.parent.iterdir())


def test_a_stale_socket_is_replaced_and_a_live_one_left_to_its_daemon(tmp_path: Path) -> None:
    """A socket left by a killed daemon is replaced. A second daemon on a live socket gives up, and its
    check of the socket does not become the first daemon's client."""
    (run := tmp_path / "run").mkdir(mode=0o700)
    path = run / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # closed without removing the file, as a killed process leaves it
    daemon = subprocess.Popen([*DAEMON, "--socket", str(path)], stderr=subprocess.PIPE)
    try:
        assert any(b"serving LSP on the Unix socket" in line for line in daemon.stderr or ())
        second = subprocess.run([*DAEMON, "--socket", str(path)], capture_output=True, timeout=60)
        assert second.returncode == 2 and b"another daemon is serving on" in second.stderr, second.stderr.decode()
        _whole_session(_connect_unix(path), daemon, _session(tmp_path))
    finally:
        daemon.kill()
    assert not path.exists()


@pytest.mark.parametrize("transport", ["tcp", "socket"])
def test_sigterm_removes_the_socket_and_token_file(tmp_path: Path, transport: str) -> None:
    (run := tmp_path / "run").mkdir(mode=0o700)
    made = run / ("token" if transport == "tcp" else "s.sock")
    flags = ["--tcp", "0", "--token-file", str(made)] if transport == "tcp" else ["--socket", str(made)]
    daemon = subprocess.Popen([*DAEMON, *flags], stderr=subprocess.PIPE)
    try:
        _until(made.exists, daemon, "the daemon's file")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
    assert not made.exists()


@pytest.mark.parametrize("flag, name", [("--socket", "s.sock"), ("--token-file", "token")])
def test_a_directory_open_to_others_is_refused(tmp_path: Path, flag: str, name: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    extra = ["--tcp", "0"] if flag == "--token-file" else []
    done = subprocess.run([*DAEMON, *extra, flag, str(shared / name)], capture_output=True, timeout=60)
    assert done.returncode == 2
    assert f"{shared} is open to other users (mode 755)".encode() in done.stderr, done.stderr.decode()
    assert not list(shared.iterdir())


def test_a_directory_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (run := tmp_path / "run").mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(run).st_uid + 1)
    with pytest.raises(tcp.TransportError, match="belongs to another user"):
        tcp.private_dir(run)


def test_a_session_over_tcp_survives_a_wrong_content_length(tmp_path: Path) -> None:
    daemon, port, token_file = _start_tcp(tmp_path)
    try:
        _until(token_file.exists, daemon, "the token file")
        session = _with_token(_session(tmp_path), token_file.read_text())
        at = session.index(b"Content-Length", session.index(b'"initialized"'))
        bad = b"Content-Length: %d\r\n\r\n%s" % (len(_ASK) + 8, _ASK)  # too long: cuts into the next header
        with _connect(port, daemon) as client:
            received = _exchange(client, session[:at] + bad + session[at:])
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
        stderr = daemon.stderr.read() if daemon.stderr else b""
    assert sorted(_responses(received)) == [1, 2, 3, 9], stderr.decode()[-3000:]
    assert b"was too long" in stderr
