"""The stdio transport: pipes are read by the event loop, a recorded session from a file still plays,
a message with a wrong Content-Length costs only itself, and a client that dies in the middle of a
message ends the daemon cleanly."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from coderag_daemon.lsp.stdio import _pollable_alone
from coderag_daemon.workspace.documents import path_to_uri

DAEMON = [sys.executable, "-m", "coderag_daemon", "--model", "/nonexistent/model.gguf", "--log-level", "INFO"]


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_framed(stream: BinaryIO) -> Iterator[dict]:
    """The messages the daemon writes to `stream`, until it closes."""
    while header := stream.readline():
        length = int(header.split(b":")[1])
        while stream.readline().strip():  # Content-Type, then the blank line
            pass
        yield json.loads(stream.read(length))


def _session(root: Path) -> bytes:
    return b"".join(
        _frame(m)
        for m in (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"capabilities": {}, "rootUri": path_to_uri(root)},
            },
            {"jsonrpc": "2.0", "method": "initialized", "params": {}},
            {"jsonrpc": "2.0", "id": 2, "method": "coderag/documentText", "params": {"uri": "untitled:none"}},
            {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
            {"jsonrpc": "2.0", "method": "exit"},
        )
    )


def _responses(stdout: bytes) -> dict[int | None, dict]:
    out: dict[int | None, dict] = {}
    for chunk in stdout.split(b"Content-Length: ")[1:]:
        message = json.loads(chunk.split(b"\r\n\r\n", 1)[1])
        if "id" in message and "method" not in message:
            out[message["id"]] = message
    return out


def test_a_session_over_pipes(tmp_path: Path) -> None:
    done = subprocess.run(DAEMON, input=_session(tmp_path), capture_output=True, timeout=60)
    responses = _responses(done.stdout)
    assert done.returncode == 0, done.stderr.decode()
    assert "inlineCompletionProvider" in responses[1]["result"]["capabilities"]
    assert "error" in responses[2]  # an unknown document: a JSON-RPC error, not a crash
    assert sorted(responses) == [1, 2, 3]


def test_a_daemon_without_a_model_ends_at_once(tmp_path: Path) -> None:
    """Shut down before any model was asked for: nothing to save, so no job waits for a model."""
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}, "rootUri": None}},
        {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]
    t0 = time.monotonic()
    done = subprocess.run(DAEMON, input=b"".join(map(_frame, messages)), capture_output=True, timeout=60)
    assert done.returncode == 0 and sorted(_responses(done.stdout)) == [1, 2], done.stderr.decode()[-2000:]
    assert time.monotonic() - t0 < 15  # the save at shutdown waited 25 s for a model that never came


def test_garbage_before_a_message_costs_only_that_line(tmp_path: Path) -> None:
    garbage = b"x" * 200_000 + b"\r\nnot a header\r\n"  # longer than any header line may be
    done = subprocess.run(DAEMON, input=garbage + _session(tmp_path), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(_responses(done.stdout)) == [1, 2, 3]
    assert b"skipped 200016 bytes from the client that were not an LSP message" in done.stderr


_ASK = json.dumps(
    {"jsonrpc": "2.0", "id": 9, "method": "coderag/documentText", "params": {"uri": "untitled:x" * 20}}
).encode()
_LONG = json.dumps({"jsonrpc": "2.0", "method": "coderag/nothing", "params": {"text": "y" * 100_000}}).encode()


@pytest.mark.parametrize(
    "bad, answered, logged",
    [
        (b"Content-Length: %d\r\n\r\n%s" % (len(_ASK) - 10, _ASK), [None, 1, 2, 3], b"not JSON"),
        (
            b"Content-Length: %d\r\n\r\n%s" % (len(_ASK) + 8, _ASK),
            [1, 2, 3, 9],
            b"was too long",
        ),  # cuts the next header
        (b"Content-Length: %d\r\n\r\n%s" % (len(_ASK) + 40, _ASK), [1, 2, 3, 9], b"was too long"),  # and its body
        (b"Content-Length: abc\r\n\r\n%s" % _ASK, [1, 2, 3], b"were not an LSP message"),
        (
            b"Content-Length: 10\r\n\r\n%s" % _LONG,
            [None, 1, 2, 3],
            b"were not an LSP message",
        ),  # the rest: one long line
    ],
    ids=["too short", "too long", "much too long", "not a number", "too short for a long body"],
)
def test_a_wrong_content_length_costs_only_its_message(
    tmp_path: Path, bad: bytes, answered: list, logged: bytes
) -> None:
    session = _session(tmp_path)
    at = session.index(b"Content-Length", session.index(b'"initialized"'))  # the bad message goes before documentText
    done = subprocess.run(DAEMON, input=session[:at] + bad + session[at:], capture_output=True, timeout=60)
    responses = _responses(done.stdout)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert sorted(responses, key=str) == sorted(answered, key=str)
    if None in responses:  # a body that is not JSON: JSON-RPC's parse error, with no id to give
        assert responses[None]["error"]["code"] == -32700
    assert logged in done.stderr


def test_a_reply_past_ascii_is_framed_by_its_utf8_bytes(tmp_path: Path) -> None:
    text = "caf\u00e9 \U0001f600\u2028"
    session = _session(tmp_path)
    at = session.index(b"Content-Length", session.index(b'"initialized"'))
    did_open = {
        "jsonrpc": "2.0",
        "method": "textDocument/didOpen",
        "params": {"textDocument": {"uri": "untitled:u", "languageId": "text", "version": 1, "text": text}},
    }
    ask = {"jsonrpc": "2.0", "id": 8, "method": "coderag/documentText", "params": {"uri": "untitled:u"}}
    done = subprocess.run(
        DAEMON, input=session[:at] + _frame(did_open) + _frame(ask) + session[at:], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert text.encode() in done.stdout  # UTF-8 as it is, not \\u escapes
    replies = {m["id"]: m for m in read_framed(io.BytesIO(done.stdout)) if "id" in m}  # each read by its length
    assert sorted(replies) == [1, 2, 3, 8] and replies[8]["result"]["text"] == text


def test_nothing_is_written_after_exit(tmp_path: Path) -> None:
    done = subprocess.run(DAEMON, input=_session(tmp_path), capture_output=True, timeout=60)
    assert b"I/O operation on closed file" not in done.stderr, done.stderr.decode()[-3000:]


def test_a_recorded_session_from_a_file(tmp_path: Path) -> None:
    recorded = tmp_path / "session.lsp"
    recorded.write_bytes(_session(tmp_path))
    with recorded.open("rb") as stdin:
        done = subprocess.run(DAEMON, stdin=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(_responses(done.stdout)) == [1, 2, 3]


def test_a_client_gone_in_the_middle_of_a_message(tmp_path: Path) -> None:
    cut = _session(tmp_path)[:-10]  # the exit notification loses its last bytes, then stdin closes
    done = subprocess.run(DAEMON, input=cut, capture_output=True, timeout=60)
    assert sorted(_responses(done.stdout)) == [1, 2, 3]
    assert b"stream ended in the middle of a message" in done.stderr


def test_only_a_pipe_or_socket_of_its_own_is_read_by_the_loop(tmp_path: Path) -> None:
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    a, b = socket.socketpair()
    regular = (tmp_path / "f").open("wb")
    try:
        assert _pollable_alone(r_in, w_out)
        assert _pollable_alone(a.fileno(), w_out)
        assert not _pollable_alone(a.fileno(), a.fileno())  # one socket both ways: it would turn non-blocking
        assert not _pollable_alone(regular.fileno(), w_out)
    finally:
        for fd in (r_in, w_in, r_out, w_out):
            os.close(fd)
        for handle in (a, b, regular):
            handle.close()
