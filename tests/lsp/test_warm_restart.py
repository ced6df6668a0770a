"""Warm restarts, end to end: a daemon saves its cache, a new one on the same workspace loads it,
and what it answers equals a fresh evaluation, also after a crash (kill -9)."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from coderag_daemon.persistence.state_store import workspace_id, workspace_roots

from .conftest import SERVER, make_client, open_file, start, until
from .test_daemon import inline_params, request

FILES = ("config.py", "auth.py", "storage.py")


@asynccontextmanager
async def daemon(workspace: Path, *flags: str) -> AsyncIterator[LanguageClient]:
    """A daemon on `workspace`, ready; shut down cleanly at the end unless the test killed it."""
    client = make_client()
    await client.start_io(*SERVER, *flags)
    try:
        await start(client, workspace)
        yield client
    finally:
        if client._server is not None and client._server.returncode is None:
            await client.shutdown_session()
        await client.stop()


def replace(path: Path, text: str) -> None:
    """Give `path` a new text at once (no half-written file for the watcher to read)."""
    new = path.with_suffix(".new")
    new.write_text(text)
    new.replace(path)


def saved_states(workspace: Path) -> list[Path]:
    return list((Path(os.environ["CODERAG_STATE_DIR"]) / workspace_id(workspace_roots([workspace]))).glob("*.state"))


def statuses(client: LanguageClient) -> list[dict[str, Any]]:
    return client.recorder.status


async def settled(client: LanguageClient, tokens: int) -> dict[str, Any]:
    """The first status after a preload that left at least `tokens` cached and the worker idle."""
    seen = len(statuses(client))
    return await until(
        lambda: next(
            (s for s in statuses(client)[seen:] if s["state"] == "ready" and s.get("tokensCached", 0) >= tokens), None
        ),
        timeout=60,
        what=f"{tokens} tokens cached",
    )


async def next_update(client: LanguageClient) -> dict[str, Any]:
    """The figures of the cache's next update, once the worker is idle again."""

    def seq() -> int:
        return max((s["last"]["seq"] for s in statuses(client) if s.get("last")), default=0)

    after = seq()
    await until(lambda: seq() > after and statuses(client)[-1]["state"] == "ready", what="an update")
    return next(s["last"] for s in reversed(statuses(client)) if s.get("last"))


async def complete(client: LanguageClient, uri: str) -> tuple[str, dict[str, Any]]:
    """A completion at line 12 of `uri`, and its figures."""
    before = max((s["lastRequest"]["seq"] for s in statuses(client) if "lastRequest" in s), default=0)
    result = await client.text_document_inline_completion_async(inline_params(uri, 12, 0))
    figures = await until(
        lambda: next(
            (s["lastRequest"] for s in reversed(statuses(client)) if s.get("lastRequest", {}).get("seq", 0) > before),
            None,
        ),
        what="the completion's figures",
    )
    return (result.items[0].insert_text if result and result.items else ""), figures


async def open_all(client: LanguageClient, workspace: Path, names: tuple[str, ...]) -> list[str]:
    uris = [open_file(client, workspace / "tasktrack" / name) for name in names]
    files = (await request(client, "coderag/context", {}))["files"]
    await settled(client, sum(f["tokens"] for f in files))
    return uris


async def test_a_restarted_daemon_loads_its_saved_cache_and_answers_the_same(workspace: Path) -> None:
    async with daemon(workspace) as first:
        uris = await open_all(first, workspace, FILES)
        text, cold = await complete(first, uris[-1])
    assert cold["tokensReprocessed"] > 0

    async with daemon(workspace) as second:
        # the editor opens them again in another order: the saved order decides
        for name in reversed(FILES):
            open_file(second, workspace / "tasktrack" / name)
        again, warm = await complete(second, uris[-1])
        restored = await until(
            lambda: next((s["restored"] for s in statuses(second) if s.get("restored")), None),
            what="the saved cache loaded",
        )
        decoded = [s["last"]["tokensReprocessed"] for s in statuses(second) if s.get("last")]
        paths = [f["path"] for f in (await request(second, "coderag/context", {}))["files"]]
        await request(second, "coderag/clearCache", {})
        fresh, _ = await complete(second, uris[-1])
    assert paths == [f"tasktrack/{name}" for name in FILES]
    assert restored["tokens"] > 0 and restored["ms"] >= 0
    assert again == text == fresh
    # as in the warm daemon before, only the request's tail was decoded: the files came from the disk
    assert warm["tokensKept"] >= cold["tokensKept"] > 0 and warm["tokensReprocessed"] <= cold["tokensReprocessed"]
    assert warm["restoreKind"] == "disk" and max(decoded) <= cold["tokensReprocessed"], decoded


async def test_a_file_changed_while_the_daemon_was_down_costs_what_an_edit_costs(workspace: Path) -> None:
    async with daemon(workspace) as first:
        uris = await open_all(first, workspace, FILES)
    auth = workspace / "tasktrack" / "auth.py"
    auth.write_text(auth.read_text() + "\n# changed while the daemon was down\n")

    async with daemon(workspace) as second:
        for name in FILES:
            open_file(second, workspace / "tasktrack" / name)
        text, figures = await complete(second, uris[-1])
        await request(second, "coderag/clearCache", {})
        fresh, _ = await complete(second, uris[-1])
    assert text == fresh
    assert figures["tokensKept"] > 0  # config.py's prefix at least


async def test_a_daemon_killed_in_a_prefill_leaves_a_state_the_next_one_loads(workspace: Path) -> None:
    async with daemon(workspace) as first:
        uris = await open_all(first, workspace, FILES)
        await until(lambda: saved_states(workspace), what="a saved state")
        open_file(first, workspace / "tasktrack" / "scheduler.py")  # a prefill under way...
        await until(lambda: statuses(first)[-1]["state"] == "preloading", what="a preload")
        os.kill(first._server.pid, signal.SIGKILL)  # ...when the daemon dies
        await first._server.wait()

    async with daemon(workspace) as second:
        for name in FILES:
            open_file(second, workspace / "tasktrack" / name)
        text, _ = await complete(second, uris[-1])
        assert any(s.get("restored") for s in statuses(second))
        await request(second, "coderag/clearCache", {})
        fresh, _ = await complete(second, uris[-1])
    assert text == fresh


async def test_with_persist_cache_off_nothing_is_saved_or_loaded(workspace: Path) -> None:
    async with daemon(workspace, "--no-persist-cache") as first:
        await open_all(first, workspace, FILES)
    async with daemon(workspace, "--no-persist-cache") as second:
        for name in FILES:
            open_file(second, workspace / "tasktrack" / name)
        await open_all(second, workspace, ())
        assert not any(s.get("restored") for s in statuses(second))
    assert not saved_states(workspace)


async def test_switching_branches_and_back_loads_the_state_saved_before(workspace: Path) -> None:
    """Files in the context but not open in the editor keep their places when they change on disk
    (a checkout): going back to the first branch loads its saved state instead of decoding it again."""
    config = workspace / "tasktrack" / "config.py"
    first_branch = config.read_text()
    async with daemon(workspace) as client:
        uris = await open_all(client, workspace, FILES)
        await until(lambda: saved_states(workspace), what="a saved state")
        for uri in uris:
            client.text_document_did_close(
                types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
            )
        replace(config, first_branch.replace("=", "= ") + "\n# the other branch\n")  # git checkout other
        other = await next_update(client)
        replace(config, first_branch)  # git checkout -
        back = await next_update(client)
        await until(
            lambda: len(saved_states(workspace)) == 2,  # the other branch, saved before it was left
            what="the other branch's state saved",
        )
        open_file(client, workspace / "tasktrack" / "notifications.py")
        text, _ = await complete(client, uris[-1])
        await request(client, "coderag/clearCache", {})
        fresh, _ = await complete(client, uris[-1])
    assert back["restoreKind"] == "disk" and back["tokensReprocessed"] < other["tokensReprocessed"] / 4, (back, other)
    assert text == fresh
