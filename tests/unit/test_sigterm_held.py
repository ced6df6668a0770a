"""A SIGTERM that arrives while the daemon makes its socket or token file waits until the file is
recorded, so the exit that follows removes it (before, it could end the process in between and
leave the file behind)."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from coderag_daemon.lsp.sockets import Listener, _sigterm_held


def test_a_sigterm_during_the_block_ends_the_process_only_after_it() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    listener = Listener(socket.socket(), "test")  # installs the daemon's SIGTERM handler
    done = []
    try:
        with pytest.raises(SystemExit):
            with _sigterm_held():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("recorded")
        assert done == ["recorded"]
    finally:
        listener.sock.close()
        signal.signal(signal.SIGTERM, previous)
