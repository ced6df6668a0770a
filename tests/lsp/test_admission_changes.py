"""Over real LSP: files leave the context when they stop being admissible, and a file read from
disk (on didClose, after a change on disk) is read only through the admission rules."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types
from pytest_lsp import LanguageClient

from .conftest import open_file
from .test_daemon import context_paths


def close(client: LanguageClient, uri: str) -> None:
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def until_paths(client: LanguageClient, expected: list[str], tries: int = 200) -> None:
    for _ in range(tries):
        if await context_paths(client) == expected:
            return
        await asyncio.sleep(0.02)
    assert await context_paths(client) == expected


async def test_closing_a_file_replaced_by_a_symlink_out_of_the_roots(
    client: LanguageClient, workspace: Path, tmp_path: Path
) -> None:
    pkg = workspace / "tasktrack"
    uris = [open_file(client, pkg / name) for name in ("config.py", "models.py")]
    outside = tmp_path / "outside_secret.txt"
    outside.write_text("AWS_SECRET_ACCESS_KEY = 'outside-the-root'\n")
    (pkg / "config.py").unlink()
    (pkg / "config.py").symlink_to(outside)
    close(client, uris[0])
    await until_paths(client, ["tasktrack/models.py"])


async def test_a_gitignore_and_a_save_take_files_out(client: LanguageClient, workspace: Path) -> None:
    pkg = workspace / "tasktrack"
    for name in ("config.py", "storage.py"):
        close(client, open_file(client, pkg / name))
    uri = open_file(client, pkg / "models.py")
    await until_paths(client, ["tasktrack/config.py", "tasktrack/storage.py", "tasktrack/models.py"])
    (workspace / ".gitignore").write_text("tasktrack/storage.py\n")  # seen by the watcher
    await until_paths(client, ["tasktrack/config.py", "tasktrack/models.py"])
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri), text="BIN = 1\n" + "\0" * 50 + "\n"
        )
    )
    await until_paths(client, ["tasktrack/config.py"])
