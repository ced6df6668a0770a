"""The daemon's DocumentStore is the only copy of an open document: pygls's workspace holds none, the
daemon's handlers see every didOpen, didChange and didClose (an edit of a document never opened is
refused in the log, not a server error), and workspace folders still reach both. In process: the
server's own state is what is checked."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coderag_daemon.lsp.handlers import build_server
from coderag_daemon.lsp.server import CoderagServer
from coderag_daemon.lsp.stdio import handle_message
from coderag_daemon.options import Options
from coderag_daemon.workspace.documents import path_to_uri
from tests.lsp.test_stdio import read_framed

URI = "untitled:notes"


class _Written:
    """What the server writes to its client."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass

    def messages(self) -> list[dict]:
        return list(read_framed(io.BytesIO(bytes(self.data))))


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CoderagServer]:
    monkeypatch.setenv("CODERAG_INDEX_DIR", str(tmp_path / "index"))
    server = build_server(Options())
    server.protocol.set_writer(_Written())
    try:
        yield server
    finally:
        server.stop()


def _play(server: CoderagServer, *messages: dict) -> list[dict]:
    """Hand `messages` to the server as the transports do, on an event loop; all it has written so far."""

    async def play() -> None:
        for message in messages:
            handle_message(server, {"jsonrpc": "2.0", **message})
            await asyncio.sleep(0)

    asyncio.run(play())
    writer = server.protocol.writer
    assert isinstance(writer, _Written)
    return writer.messages()


def _initialize(folders: list[Path] | None = None) -> dict:
    params: dict[str, Any] = {"capabilities": {}}
    if folders is not None:
        params["workspaceFolders"] = [{"uri": path_to_uri(f), "name": f.name} for f in folders]
    return {"id": 1, "method": "initialize", "params": params}


def _did_open(text: str) -> dict:
    return {
        "method": "textDocument/didOpen",
        "params": {"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": text}},
    }


def _did_change(version: int, start: tuple[int, int], end: tuple[int, int], text: str, uri: str = URI) -> dict:
    change = {
        "range": {"start": {"line": start[0], "character": start[1]}, "end": {"line": end[0], "character": end[1]}},
        "text": text,
    }
    return {
        "method": "textDocument/didChange",
        "params": {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
    }


def _did_close() -> dict:
    return {"method": "textDocument/didClose", "params": {"textDocument": {"uri": URI}}}


def test_pygls_keeps_no_copy_of_an_open_document(server: CoderagServer) -> None:
    _play(server, _initialize())
    for message, text in [
        (_did_open("one\ntwo\n"), "one\ntwo\n"),
        (_did_change(2, (1, 0), (1, 3), "2"), "one\n2\n"),
        (_did_close(), None),
    ]:
        written = _play(server, message)
        doc = server.project.documents.get(URI)
        assert (doc and doc.text) == text
        assert server.protocol.workspace.text_documents == {}
    assert not [m for m in written if m.get("method") == "window/showMessage"]
    assert not server.protocol._request_futures  # pygls's own handlers left a finished future each


def test_an_edit_of_a_document_never_opened_is_refused_in_the_log(
    server: CoderagServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    written = _play(
        server,
        _initialize(),
        _did_change(2, (0, 0), (0, 0), "x", uri="untitled:never-opened"),
        _did_open("one\n"),
        _did_change(2, (0, 3), (0, 3), "!"),
    )
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "edit of untitled:never-opened refused: unknown document untitled:never-opened")
    ]
    assert [m["id"] for m in written] == [1]  # the initialize response, and no error shown
    assert server.project.documents.get(URI).text == "one!\n"


def test_workspace_folders_reach_pygls_and_the_daemon(server: CoderagServer, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    _play(server, _initialize([first]))
    assert list(server.project.admission.roots) == [first]
    _play(
        server,
        {
            "method": "workspace/didChangeWorkspaceFolders",
            "params": {
                "event": {
                    "added": [{"uri": path_to_uri(second), "name": "second"}],
                    "removed": [{"uri": path_to_uri(first), "name": "first"}],
                }
            },
        },
    )
    assert list(server.project.admission.roots) == [second]
    assert list(server.protocol.workspace.folders) == [path_to_uri(second)]
