"""Malformed messages over the daemon's stdio: every request gets an answer (JSON-RPC's InvalidParams
or InvalidRequest), a notification that cannot be applied is logged, and the daemon stays up."""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from coderag_daemon.workspace.documents import path_to_uri
from tests.lsp.test_stdio import DAEMON, _frame, _responses, read_framed


def _initialize(root: Path) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"capabilities": {}, "rootUri": path_to_uri(root)},
    }


def _completion(msg_id: int, position: Any) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": msg_id,
        "method": "textDocument/inlineCompletion",
        "params": {"textDocument": {"uri": "untitled:x"}, "position": position, "context": {"triggerKind": 1}},
    }


def _exchange(root: Path, messages: list[Any]) -> dict[int | None, dict]:
    """The responses to `messages`, sent after initialize and before shutdown (id 3) and exit."""
    session = [
        _initialize(root),
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        *messages,
        {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]
    done = subprocess.run(DAEMON, input=b"".join(_frame(m) for m in session), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    responses = _responses(done.stdout)
    assert "result" in responses.pop(1) and "result" in responses.pop(3)
    return responses


def test_a_request_whose_params_lsprotocol_cannot_read_is_answered(tmp_path: Path) -> None:
    responses = _exchange(
        tmp_path,
        [
            _completion(11, {"line": -1, "character": 0}),
            _completion(12, "3:4"),
            {"jsonrpc": "2.0", "id": 13, "method": "textDocument/inlineCompletion"},
            _completion(14, {"line": 2**40, "character": 0}),
            {"jsonrpc": "2.0", "id": 15, "method": "initialize", "params": {"capabilities": 5}},
        ],
    )
    assert {msg_id: r["error"]["code"] for msg_id, r in responses.items()} == dict.fromkeys(range(11, 16), -32602)
    messages = {msg_id: r["error"]["message"] for msg_id, r in responses.items()}
    assert all(m.startswith("invalid params for ") for m in messages.values())
    assert "Position.line should be in range [0:2147483647], but was -1" in messages[11]
    assert "(at params.position.line)" in messages[12]
    assert "required field missing (at params)" in messages[13]
    assert "but was 1099511627776" in messages[14]
    assert "(at params.capabilities)" in messages[15]


def test_a_message_that_is_not_json_rpc_2_is_answered(tmp_path: Path) -> None:
    ask = {"jsonrpc": "2.0", "id": 16, "method": "coderag/documentText", "params": {"uri": "untitled:x"}}
    responses = _exchange(
        tmp_path,
        [
            {k: v for k, v in ask.items() if k != "jsonrpc"},
            {**ask, "jsonrpc": "1.0", "id": 17},
            {"jsonrpc": "2.0", "id": 18},
            {"jsonrpc": "2.0", "id": 19, "method": 5},
            [{**ask, "id": 20}],  # a batch: LSP has none
        ],
    )
    codes = {msg_id: r["error"]["code"] for msg_id, r in responses.items()}
    assert codes == dict.fromkeys([16, 17, 18, 19, None], -32600)
    assert "batch" in responses[None]["error"]["message"]  # one answer for the batch, with id null


def test_json_that_orjson_refuses_or_reads_otherwise_goes_through_as_json_has_it(tmp_path: Path) -> None:
    """NaN, a lone surrogate and an integer past 64 bits: read and answered as json.loads and
    json.dumps read and write them."""
    big = 2**64
    text = "a\ud800b"
    responses = _exchange(
        tmp_path,
        [
            {"jsonrpc": "2.0", "id": big, "method": "coderag/documentText", "params": {"uri": "untitled:x"}},
            {"jsonrpc": "2.0", "id": 21, "method": "coderag/documentText", "params": {"uri": float("nan")}},
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {"textDocument": {"uri": "untitled:s", "languageId": "python", "version": 1, "text": text}},
            },
            {"jsonrpc": "2.0", "id": 22, "method": "coderag/documentText", "params": {"uri": "untitled:s"}},
        ],
    )
    assert sorted(responses, key=str) == sorted([big, 21, 22], key=str)
    assert "unknown document" in responses[big]["error"]["message"]
    assert "'uri' has the wrong type (float)" in responses[21]["error"]["message"]
    assert responses[22]["result"]["text"] == text


class _Client:
    """The daemon on pipes, answered message by message."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            DAEMON, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.received: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.process.stdout
        assert out is not None
        for message in read_framed(out):
            self.received.put(message)

    def send(self, message: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(_frame(message))
        self.process.stdin.flush()

    def until(self, wanted: Any, timeout: float = 20) -> list[dict]:
        """Every message received up to and including the first that `wanted` accepts."""
        seen = []
        while not seen or not wanted(seen[-1]):
            seen.append(self.received.get(timeout=timeout))
        return seen

    def close(self) -> None:
        self.send({"jsonrpc": "2.0", "id": 99, "method": "shutdown"})
        self.until(lambda m: m.get("id") == 99)
        self.send({"jsonrpc": "2.0", "method": "exit"})
        assert self.process.wait(20) == 0


@pytest.fixture
def client(tmp_path: Path) -> Iterator[_Client]:
    """An initialized daemon whose log reaches the client."""
    client = _Client()
    try:
        client.send(_initialize(tmp_path))
        client.until(lambda m: m.get("id") == 1)
        client.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        client.until(lambda m: m.get("method") == "coderag/status")  # sent after the log handler is in place
        yield client
        client.close()
    finally:
        client.process.kill()


def _logged(text: str) -> Callable[[dict], bool]:
    return lambda m: m.get("method") == "window/logMessage" and text in m["params"]["message"]


def _change(version: Any) -> dict:
    return {
        "jsonrpc": "2.0",
        "method": "textDocument/didChange",
        "params": {
            "textDocument": {"uri": "untitled:never-opened", "version": version},
            "contentChanges": [{"text": "x"}],
        },
    }


def test_an_edit_of_a_document_never_opened_is_refused_in_the_log(client: _Client) -> None:
    client.send(_change(2))
    seen = client.until(_logged("edit of untitled:never-opened refused: unknown document"))
    assert seen[-1]["params"]["type"] == types.MessageType.Warning


def test_a_notification_whose_params_lsprotocol_cannot_read_is_logged_not_answered(client: _Client) -> None:
    client.send(_change("two"))
    seen = client.until(_logged("ignored textDocument/didChange: invalid params"))
    assert seen[-1]["params"]["type"] == types.MessageType.Warning
    assert "(at params.textDocument.version)" in seen[-1]["params"]["message"]
    assert not [m for m in seen if "id" in m and "method" not in m]  # a notification gets no reply
