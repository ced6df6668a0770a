"""End to end: with `completionDefinitionTokens`, a completion's request holds the definitions of the
names used above the cursor that the workspace index finds outside the file context."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from .conftest import SERVER, daemon, edit, open_file, start, until

LIB = '''def save_record(store, key: str, data: bytes, *, overwrite: bool = False) -> int:
    """Write `data` under `key`; the bytes written."""
    return len(data)
'''
APP = "from lib import save_record\n\n\ndef main(store):\n    n = save_record(store, 'k', b'')\n    \n"


def complete_params(uri: str) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=5, character=4),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    )


async def tail_tokens(client: LanguageClient, uri: str, n: int) -> int:
    """The tokens of the completion's context beyond the file context (its request tail), after the
    line above the cursor's window is made `# n` (so that no suggestion shown before answers)."""
    edit(client, uri, n + 1, 1, 0, f"# {n}", end=(1, len(f"# {n - 1}") if n > 1 else 0))
    before = len(client.recorder.status)
    await client.text_document_inline_completion_async(complete_params(uri))
    figures = await until(
        lambda: [s["lastRequest"] for s in client.recorder.status[before:] if "lastRequest" in s],
        what="the completion's figures",
    )
    context: dict[str, Any] = await client.protocol.send_request_async("coderag/context", {})
    return figures[-1]["tokensInContext"] - sum(f["tokens"] for f in context["files"] if not f["path"] == "app.py")


@pytest_lsp.fixture(config=daemon(SERVER))
async def client(lsp_client: LanguageClient, tmp_path: Path):
    (tmp_path / "lib.py").write_text(LIB)
    (tmp_path / "app.py").write_text(APP)
    await start(lsp_client, tmp_path)
    yield
    await lsp_client.shutdown_session()


async def test_definitions_go_in_the_tail_when_the_setting_asks(client: LanguageClient, tmp_path: Path) -> None:
    uri = open_file(client, tmp_path / "app.py")

    async def indexed() -> bool:
        found = await client.protocol.send_request_async("coderag/search", {"query": "save_record"})
        return not found["indexing"] and any(r["path"] == "lib.py" for r in found["results"])

    for _ in range(200):
        if await indexed():
            break
        await asyncio.sleep(0.05)
    without = await tail_tokens(client, uri, 1)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"completionDefinitionTokens": 512})
    )
    with_them = await tail_tokens(client, uri, 2)
    # the stub file: its header and the signature with its docstring line, a byte a token or so here
    assert with_them - without > len("def save_record(store, key: str, data: bytes, *, overwrite: bool = False)")
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"completionDefinitionTokens": 0})
    )
    assert await tail_tokens(client, uri, 3) == without
