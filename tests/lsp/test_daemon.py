"""The daemon over real LSP: sync, context order, completion, chat, cancellation, preloading,
files changed on disk, configuration errors and bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .conftest import edit, open_file, until


async def request(client: LanguageClient, method: str, params: object = None) -> Any:
    return await client.protocol.send_request_async(method, params)


async def context_paths(client: LanguageClient) -> list[str]:
    result = await request(client, "coderag/context", {})
    return [f["path"] for f in result["files"]]


def inline_params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
    )


async def test_initialize_announces_inline_completion(client: LanguageClient) -> None:
    # pytest-lsp's initialize_session returned the capabilities; ask again via the recorded state
    status = client.recorder.status[-1]
    assert status["state"] == "ready" and status["nCtx"] == 4096 and status["strategy"] == "truncate"


async def test_document_sync_matches_the_editor(client: LanguageClient, workspace: Path) -> None:
    uri = open_file(client, workspace / "tasktrack" / "models.py")
    edit(client, uri, 2, 0, 0, "# café ☕ 𝄞\r\n")
    edit(client, uri, 3, 0, 9, "X", end=(0, 11))  # replaces 𝄞: a surrogate pair, 2 UTF-16 units
    result = await request(client, "coderag/documentText", {"uri": uri})
    expected = "# café ☕ X\r\n" + (workspace / "tasktrack" / "models.py").read_text()
    assert result["text"] == expected and result["version"] == 3


async def test_context_order_is_least_recently_edited_first(client: LanguageClient, workspace: Path) -> None:
    pkg = workspace / "tasktrack"
    uris = {name: open_file(client, pkg / name) for name in ("config.py", "auth.py", "scheduler.py")}
    assert await context_paths(client) == ["tasktrack/config.py", "tasktrack/auth.py", "tasktrack/scheduler.py"]
    edit(client, uris["config.py"], 2, 0, 0, "# edited\n")
    assert await context_paths(client) == ["tasktrack/auth.py", "tasktrack/scheduler.py", "tasktrack/config.py"]
    result = await request(client, "coderag/context", {})
    assert all(f["tokens"] > 0 and f["uri"].startswith("file://") for f in result["files"])


async def test_inline_completion_and_type_through(client: LanguageClient, workspace: Path) -> None:
    uri = open_file(client, workspace / "tasktrack" / "auth.py")
    result = await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
    assert len(result.items) == 1  # the tiny model is deterministic: it always proposes something here
    shown = result.items[0].insert_text
    assert len(shown) >= 2 and result.items[0].range.start == types.Position(line=10, character=0)
    status = await until(lambda: [s for s in client.recorder.status if s.get("last")], what="status with figures")
    assert status[-1]["last"]["tokensReprocessed"] > 0

    def model_calls() -> int:
        return sum(m.message.startswith("completion:") for m in client.log_messages)

    calls = await until(model_calls, what="the completion's log line")
    edit(client, uri, 2, 10, 0, shown[0])  # the user types the first character of the suggestion
    again = await client.text_document_inline_completion_async(inline_params(uri, 10, 1))
    assert again.items[0].insert_text == shown[1:]
    assert model_calls() == calls  # answered from the shown suggestion, without the model


async def test_chat_streams_the_answer(client: LanguageClient, workspace: Path) -> None:
    uri = open_file(client, workspace / "tasktrack" / "auth.py")
    result = await request(
        client,
        "coderag/chat",
        {
            "question": "Where is a token's expiry checked?",
            "uri": uri,
            "position": {"line": 3, "character": 0},
            "token": "t1",
        },
    )
    streamed = "".join(d["delta"] for d in client.recorder.deltas if d["token"] == "t1")
    assert streamed == result["answer"]
    assert result["stats"]["tokensReprocessed"] > 0 and result["stats"]["stopReason"]


async def test_completing_after_a_chat_keeps_the_cursor_window_until_an_edit_settles(
    client: LanguageClient, workspace: Path
) -> None:
    pkg = workspace / "tasktrack"
    open_file(client, pkg / "config.py")
    uri = open_file(client, pkg / "auth.py")

    def request_figures(seq: int) -> dict[str, Any] | None:
        return next(
            (s["lastRequest"] for s in client.recorder.status if s.get("lastRequest", {}).get("seq") == seq), None
        )

    await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
    await request(client, "coderag/chat", {"question": "What does auth.py do?", "uri": uri})
    files = (await request(client, "coderag/context", {}))["files"]
    config_end = files[0]["start"] + files[0]["tokens"]
    assert [f["cached"] for f in files] == [True, True]  # the chat holds every file
    # a key typed at the same cursor (a cursor elsewhere changes the text after it, which the
    # request puts first: the whole window would be reprocessed whatever the chat did)
    edit(client, uri, 2, 10, 0, "#")
    await client.text_document_inline_completion_async(inline_params(uri, 10, 1))
    after_chat = await until(lambda: request_figures(3), what="the third request's figures")
    assert after_chat["kind"] == "completion"
    # the chat ran on its own sequence: the completion's window up to the old cursor is still cached
    # (with one sequence only config.py would be, and the window would be decoded again)
    assert after_chat["tokensKept"] > config_end + 50, (after_chat, config_end)
    assert after_chat["restoreKind"] == "none"  # the typed key only extends the cached request

    # an edit that settles frees the chat's cells: only the completion's context stays cached
    with_chat = (await until(lambda: [s for s in client.recorder.status if s["state"] == "ready"], what="ready"))[-1]
    seen = len(client.recorder.status)
    edit(client, uri, 3, 12, 0, "x = 1\n")
    preloaded = await until(
        lambda: [
            s
            for s in client.recorder.status[seen:]
            if s["state"] == "ready"
            and s.get("last")
            and any(t["state"] == "preloading" for t in client.recorder.status[seen:])
        ],
        what="a preload after the edit",
    )
    assert preloaded[-1]["tokensCached"] < with_chat["tokensCached"] - 100, (preloaded[-1], with_chat)
    context = await request(client, "coderag/context", {})
    # the completion's context holds config.py, and auth.py only as its cursor window
    assert [f["cached"] for f in context["files"]] == [True, False]
    assert context["tokensCached"] == client.recorder.status[-1]["tokensCached"]


async def test_cancel_stops_a_chat(client: LanguageClient, workspace: Path) -> None:
    # a question the tiny model answers up to the length limit (it ends some answers after a few dozen
    # tokens): 2,048 tokens take over a second, so the cancel lands mid-answer even on a busy machine
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"coderag": {"maxChatTokens": 2048}})
    )
    open_file(client, workspace / "tasktrack" / "api.py")
    future = client.protocol.send_request(
        "coderag/chat", {"question": "Describe api.py line by line.", "token": "c"}, msg_id="chat-1"
    )
    await until(lambda: client.recorder.deltas, what="first streamed text")
    client.protocol.notify("$/cancelRequest", types.CancelParams(id="chat-1"))
    with pytest.raises(JsonRpcException, match="cancel"):
        await asyncio.wrap_future(future)
    streamed = len(client.recorder.deltas)
    # the worker is free again at once: another request is answered, and no more text arrives
    assert await context_paths(client) == ["tasktrack/api.py"]
    assert len(client.recorder.deltas) == streamed


async def test_completion_preempts_a_preload(client: LanguageClient, workspace: Path) -> None:
    pkg = workspace / "tasktrack"
    uris = [open_file(client, pkg / name) for name in ("storage.py", "api.py", "notifications.py")]
    edit(client, uris[0], 2, 0, 0, "# first file edited: the whole context is preloaded\n")
    await until(lambda: any(s.get("state") == "preloading" for s in client.recorder.status), what="a preload")
    result = await client.text_document_inline_completion_async(inline_params(uris[1], 5, 0))
    assert result is not None
    states = [s["state"] for s in client.recorder.status]
    assert "busy" in states[states.index("preloading") :]


async def test_open_files_are_decoded_in_the_background(client: LanguageClient, workspace: Path) -> None:
    for name in ("config.py", "auth.py"):
        open_file(client, workspace / "tasktrack" / name)
    await until(lambda: any(s["state"] == "preloading" for s in client.recorder.status), what="a preload")
    await until(lambda: client.recorder.status[-1]["state"] == "ready", what="ready")
    context = await request(client, "coderag/context", {})
    assert [f["cached"] for f in context["files"]] == [True, True], context


async def test_a_question_before_the_warm_up_keeps_its_cells(client: LanguageClient, workspace: Path) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"preloadDelayMs": 1500}))
    for name in ("config.py", "auth.py"):
        open_file(client, workspace / "tasktrack" / name)
    asked = await request(client, "coderag/chat", {"question": "What does config.py hold?"})
    # the warm-up after the opens finds the files in the chat's cells: it takes them from there, and
    # leaves the chat's own, since nothing changed since the question
    await until(lambda: any(s["state"] == "preloading" for s in client.recorder.status), what="the warm-up")
    await until(lambda: client.recorder.status[-1]["state"] == "ready", what="ready")
    assert client.recorder.status[-1]["last"]["tokensReprocessed"] <= 1, client.recorder.status[
        -1
    ]  # the last one, for its logits
    history = [
        {"role": "user", "content": "What does config.py hold?"},
        {"role": "assistant", "content": asked["answer"]},
    ]
    again = await request(client, "coderag/chat", {"question": "And auth.py?", "history": history})
    assert again["stats"]["tokensKept"] > sum(
        f["tokens"] for f in (await request(client, "coderag/context", {}))["files"]
    )


async def test_a_completion_does_not_wait_for_files_still_to_decode(client: LanguageClient, workspace: Path) -> None:
    # a long preload delay keeps the warm-up from starting before the request
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"completionWaitTokens": 0, "preloadDelayMs": 1500})
    )
    pkg = workspace / "tasktrack"
    for name in ("config.py", "auth.py"):
        open_file(client, pkg / name)
    uri = open_file(client, pkg / "scheduler.py")
    files = (await request(client, "coderag/context", {}))["files"]
    others = sum(f["tokens"] for f in files if f["path"] != "tasktrack/scheduler.py")

    def figures(seq: int) -> dict[str, Any] | None:
        return next(
            (s["lastRequest"] for s in client.recorder.status if s.get("lastRequest", {}).get("seq") == seq), None
        )

    await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
    first = await until(lambda: figures(1), what="the first completion's figures")
    assert first["contextTokensLeftOut"] == others, (first, files)  # nothing was decoded: only the head stays

    # the completion asked for a preload of what it left out; afterwards nothing is left out
    await until(lambda: any(s["state"] == "preloading" for s in client.recorder.status), what="a preload")
    await until(lambda: client.recorder.status[-1]["state"] == "ready", what="ready")
    await client.text_document_inline_completion_async(inline_params(uri, 12, 0))
    second = await until(lambda: figures(2), what="the second completion's figures")
    assert "contextTokensLeftOut" not in second and second["tokensKept"] > others, second


async def test_file_changed_on_disk_is_reread(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "tasktrack" / "cli.py"
    uri = open_file(client, path)
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    before = {f["path"]: f["tokens"] for f in (await request(client, "coderag/context", {}))["files"]}
    path.write_text(path.read_text() + "\n\ndef added_on_disk() -> None:\n    '''Written by another tool.'''\n")

    async def tokens_now() -> int:
        return {f["path"]: f["tokens"] for f in (await request(client, "coderag/context", {}))["files"]}[
            "tasktrack/cli.py"
        ]

    for _ in range(100):
        if await tokens_now() > before["tasktrack/cli.py"]:
            break
        await asyncio.sleep(0.05)
    assert await tokens_now() > before["tasktrack/cli.py"]
    path.unlink()
    for _ in range(100):
        if "tasktrack/cli.py" not in await context_paths(client):
            break
        await asyncio.sleep(0.05)
    assert "tasktrack/cli.py" not in await context_paths(client)


async def test_a_file_changed_on_disk_is_decoded_again_in_the_background(
    client: LanguageClient, workspace: Path
) -> None:
    path = workspace / "tasktrack" / "cli.py"
    uri = open_file(client, path)
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await until(lambda: any(s["state"] == "preloading" for s in client.recorder.status), what="the warm-up")
    await until(lambda: client.recorder.status[-1]["state"] == "ready", what="ready")
    seen = len(client.recorder.status)
    path.write_text(path.read_text() + "\n# changed by another tool\n")
    await until(
        lambda: any(s["state"] == "preloading" for s in client.recorder.status[seen:]),
        what="a preload after the change",
    )
    await until(lambda: client.recorder.status[-1]["state"] == "ready", what="ready")
    (cli,) = (await request(client, "coderag/context", {}))["files"]
    assert cli["cached"] and client.recorder.status[-1]["last"]["tokensReprocessed"] > 0, cli


async def test_bad_input_gets_errors_and_the_server_stays_up(client: LanguageClient, workspace: Path) -> None:
    with pytest.raises(JsonRpcException, match="Method Not Found|not found"):
        await request(client, "coderag/noSuchMethod", {})
    with pytest.raises(JsonRpcException, match="question"):
        await request(client, "coderag/chat", {"question": 42})
    with pytest.raises(JsonRpcException, match="unknown document"):
        await client.text_document_inline_completion_async(inline_params("file:///nowhere.py", 0, 0))
    # an edit for an unknown document and one out of range are refused with a log line
    edit(client, "file:///nowhere.py", 2, 0, 0, "x")
    uri = open_file(client, workspace / "tasktrack" / "config.py")
    edit(client, uri, 2, 5, 10, "x", end=(2, 2))
    text = (await request(client, "coderag/documentText", {"uri": uri}))["text"]
    assert text == (workspace / "tasktrack" / "config.py").read_text()
    assert await context_paths(client) == ["tasktrack/config.py"]


async def test_files_outside_the_workspace_never_enter(client: LanguageClient, workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret_elsewhere.py"
    outside.write_text("API_KEY = 'x'\n")
    open_file(client, outside)
    open_file(client, workspace / "tasktrack" / ".." / ".." / outside.name)
    (workspace / ".env").write_text("PASSWORD=hunter2\n")
    open_file(client, workspace / ".env")
    assert await context_paths(client) == []


async def test_long_prefills_report_progress(client: LanguageClient, workspace: Path) -> None:
    uris = [open_file(client, workspace / "tasktrack" / name) for name in ("storage.py", "api.py", "notifications.py")]
    await client.text_document_inline_completion_async(inline_params(uris[0], 3, 0))

    def completion_progress() -> list[list[object]]:
        return [
            reports
            for reports in client.progress_reports.values()
            if reports and getattr(reports[0], "title", "") == "coderag: completion"
        ]

    (reports,) = await until(completion_progress, what="a completion progress")
    await until(lambda: isinstance(reports[-1], types.WorkDoneProgressEnd), what="its end")
    percentages = [r.percentage for r in reports if isinstance(r, types.WorkDoneProgressReport)]
    assert percentages == sorted(percentages) and all(0 <= p <= 100 for p in percentages)
