"""A client that does not wait for the model: the opening messages and a completion, written to the
daemon's stdin at once, get a completion once the model is in (or the load's own error), whatever
order the daemon's handlers run in, and whether or not the client accepts a progress for the load."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from coderag_daemon.workspace.documents import path_to_uri
from fixtures.tiny_models import tiny_model_path
from tests.lsp.test_stdio import _frame, read_framed

TEXT = "def add(a, b):\n    return a + b\n\n"


def _daemon(model: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "coderag_daemon",
        "--model",
        str(model),
        "--threads",
        "1",
        "--n-ctx",
        "2048",
        "--log-level",
        "INFO",
    ]


class _Daemon:
    """The daemon on pipes; requests it sends the client (progress creation) are answered, or not."""

    def __init__(self, model: Path, answer_requests: bool) -> None:
        self.process = subprocess.Popen(
            _daemon(model), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.answer_requests = answer_requests
        self.responses: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.process.stdout
        assert out is not None
        for message in read_framed(out):
            if "method" not in message:
                self.responses.put(message)
            elif "id" in message and self.answer_requests:
                self.write({"jsonrpc": "2.0", "id": message["id"], "result": None})

    def write(self, *messages: dict) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"".join(_frame(m) for m in messages))
        self.process.stdin.flush()

    def response(self, msg_id: int, timeout: float = 60) -> dict:
        while (message := self.responses.get(timeout=timeout)).get("id") != msg_id:
            pass
        return message

    def close(self) -> None:
        self.write({"jsonrpc": "2.0", "id": 99, "method": "shutdown"})
        self.response(99)
        self.write({"jsonrpc": "2.0", "method": "exit"})
        assert self.process.wait(20) == 0


def _at_once(root: Path) -> list[dict[str, Any]]:
    """initialize (with progress support), initialized, didOpen, didChange and a completion."""
    path = root / "calc.py"
    path.write_text(TEXT)
    uri = path_to_uri(path)
    return [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"capabilities": {"window": {"workDoneProgress": True}}, "rootUri": path_to_uri(root)},
        },
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": TEXT}},
        },
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didChange",
            "params": {
                "textDocument": {"uri": uri, "version": 2},
                "contentChanges": [
                    {
                        "range": {"start": {"line": 3, "character": 0}, "end": {"line": 3, "character": 0}},
                        "text": "def sub",
                    }
                ],
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "textDocument/inlineCompletion",
            "params": {
                "textDocument": {"uri": uri},
                "position": {"line": 3, "character": 7},
                "context": {"triggerKind": 1},
            },
        },
    ]


@pytest.mark.parametrize("answer_requests", [True, False], ids=["progress accepted", "progress never answered"])
def test_a_completion_sent_with_the_opening_messages_waits_for_the_model(tmp_path: Path, answer_requests: bool) -> None:
    daemon = _Daemon(tiny_model_path("dense"), answer_requests)
    try:
        daemon.write(*_at_once(tmp_path))  # one write
        assert "result" in daemon.response(1)
        completion = daemon.response(2)
        assert "error" not in completion, completion
        assert isinstance(completion["result"]["items"], list)  # what the tiny model says does not matter
        daemon.close()
    finally:
        daemon.process.kill()


def test_a_completion_sent_with_the_opening_messages_gets_the_error_of_a_failed_load(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    daemon = _Daemon(missing, answer_requests=True)
    try:
        daemon.write(*_at_once(tmp_path))
        error = daemon.response(2)["error"]
        assert error["code"] == -32803 and str(missing) in error["message"], error
        daemon.close()
    finally:
        daemon.process.kill()
