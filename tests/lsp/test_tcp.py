"""`--tcp PORT`: one client on 127.0.0.1, read by the same message reader as stdin, so a wrong
Content-Length costs only its own message; the client's exit ends the daemon."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from .test_stdio import _ASK, DAEMON, _responses, _session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int, daemon: subprocess.Popen) -> socket.socket:
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except ConnectionRefusedError:
            assert daemon.poll() is None and time.monotonic() < deadline, "the daemon never listened"
            time.sleep(0.1)


def test_a_session_over_tcp_survives_a_wrong_content_length(tmp_path: Path) -> None:
    port = _free_port()
    daemon = subprocess.Popen([*DAEMON, "--tcp", str(port)], stderr=subprocess.PIPE)
    try:
        session = _session(tmp_path)
        at = session.index(b"Content-Length", session.index(b'"initialized"'))
        bad = b"Content-Length: %d\r\n\r\n%s" % (len(_ASK) + 8, _ASK)  # too long: cuts into the next header
        with _connect(port, daemon) as client:
            client.sendall(session[:at] + bad + session[at:])
            received = b""
            while chunk := client.recv(65536):  # the daemon closes the connection on exit
                received += chunk
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
        stderr = daemon.stderr.read() if daemon.stderr else b""
    assert sorted(_responses(received)) == [1, 2, 3, 9], stderr.decode()[-3000:]
    assert b"was too long" in stderr
