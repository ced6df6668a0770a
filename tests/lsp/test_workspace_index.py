"""The workspace index over LSP: coderag/search, chat sources, and the index following the disk."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from coderag_daemon.workspace.documents import path_to_uri

from .conftest import open_file, until
from .test_daemon import request

LEDGER = '''"""Balances of the team's shared ledger."""


def reconcile_ledger_balance(entries, opening):
    """Sum the ledger entries onto the opening balance; refunds count negative."""
    total = opening
    for entry in entries:
        total += -entry.amount if entry.refund else entry.amount
    return total
'''


async def search(client: LanguageClient, query: str, **params: Any) -> dict[str, Any]:
    return await request(client, "coderag/search", {"query": query, **params})


async def eventually_searched(
    client: LanguageClient, query: str, ok: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
) -> dict[str, Any]:
    """Search until the result satisfies `ok` (the index follows the disk in the background)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not ok(result := await search(client, query)):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return result


async def write_and_find(client: LanguageClient, path: Path, text: str, query: str) -> dict[str, Any]:
    """Write a file on disk and wait until the index (told by the disk watcher) ranks it first."""
    path.write_text(text)
    return await eventually_searched(
        client,
        query,
        lambda r: bool(r["results"]) and r["results"][0]["uri"] == path_to_uri(path),
        f"{path.name} in the index",
    )


async def test_search_ranks_chunks_with_ranges_of_real_lines(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "tasktrack" / "ledger.py"
    result = await write_and_find(client, path, LEDGER, "reconcile the ledger balance")
    best = result["results"][0]
    assert best["path"] == "tasktrack/ledger.py" and best["title"] == "def reconcile_ledger_balance"
    lines = LEDGER.splitlines(keepends=True)
    start, end = best["range"]["start"]["line"], best["range"]["end"]["line"]
    assert best["text"] == "".join(lines[start : end + 1])
    assert best["label"] == f"tasktrack/ledger.py:{start + 1}-{end + 1}"
    assert result["files"] > 5 and result["indexing"] is False
    assert len((await search(client, "token", limit=2))["results"]) == 2


async def test_bad_search_params_get_errors(client: LanguageClient) -> None:
    for params in (
        {},
        {"query": "  "},
        {"query": 3},
        {"query": "x", "limit": 0},
        {"query": "x", "limit": 101},
        {"query": "x", "limit": "5"},
    ):
        with pytest.raises(JsonRpcException):
            await request(client, "coderag/search", params)
    assert (await search(client, "token"))["results"]  # still up


async def test_chat_cites_retrieved_code_of_files_not_in_the_context(client: LanguageClient, workspace: Path) -> None:
    open_file(client, workspace / "tasktrack" / "auth.py")
    await write_and_find(client, workspace / "tasktrack" / "ledger.py", LEDGER, "ledger balance refunds")
    result = await request(
        client, "coderag/chat", {"question": "How is the ledger balance reconciled with refunds?", "token": "q1"}
    )
    sources = result["sources"]
    assert sources and sources[0]["path"] == "tasktrack/ledger.py"
    assert all(s["path"] != "tasktrack/auth.py" for s in sources)  # in the cached context already
    assert result["stats"]["retrievedTokens"] > 0
    final = [d for d in client.recorder.deltas if d["token"] == "q1"][-1]
    assert final == {"token": "q1", "delta": "", "done": True, "sources": sources}
    first, last = sources[0]["range"]["start"]["line"], sources[0]["range"]["end"]["line"]
    assert "def reconcile_ledger_balance" in "".join(LEDGER.splitlines(keepends=True)[first : last + 1])


async def test_retrieval_can_be_turned_off(client: LanguageClient, workspace: Path) -> None:
    await write_and_find(client, workspace / "tasktrack" / "ledger.py", LEDGER, "ledger balance")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"retrievalTokens": 0}))
    result = await request(client, "coderag/chat", {"question": "How is the ledger balance reconciled?"})
    assert result["sources"] == [] and "retrievedTokens" not in result["stats"]


async def test_deleted_files_leave_the_index(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "tasktrack" / "ledger.py"
    await write_and_find(client, path, LEDGER, "reconcile ledger")
    path.unlink()
    await eventually_searched(
        client,
        "reconcile ledger",
        lambda r: all(x["path"] != "tasktrack/ledger.py" for x in r["results"]),
        "the deleted file to leave the index",
    )


async def test_a_file_gitignored_later_leaves_the_index(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "tasktrack" / "ledger.py"
    await write_and_find(client, path, LEDGER, "reconcile ledger")
    with (workspace / ".gitignore").open("a") as rules:
        rules.write("\ntasktrack/ledger.py\n")
    await eventually_searched(
        client,
        "reconcile ledger",
        lambda r: all(x["path"] != "tasktrack/ledger.py" for x in r["results"]),
        "the ignored file to leave the index",
    )


async def test_indexing_reports_progress(client: LanguageClient) -> None:
    def index_progress() -> list[list[object]]:
        return [
            reports
            for reports in client.progress_reports.values()
            if reports and getattr(reports[0], "title", "") == "coderag: indexing workspace"
        ]

    (reports,) = await until(index_progress, what="an indexing progress")
    await until(lambda: isinstance(reports[-1], types.WorkDoneProgressEnd), what="its end")
