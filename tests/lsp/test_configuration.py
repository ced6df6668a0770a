"""Settings from the editor, and a daemon started without a usable model."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .conftest import SERVER, daemon, open_file, start, until

BROKEN = Path(__file__).with_name("not-a-model.gguf")


@pytest_lsp.fixture(config=daemon(SERVER))
async def misconfigured(lsp_client: LanguageClient, workspace: Path):
    await start(
        lsp_client, workspace, {"nCtx": "big", "maxCompletionTokens": 0, "noSuchSetting": 1, "preloadDelayMs": 50}
    )
    yield
    await lsp_client.shutdown_session()


async def test_bad_settings_are_reported_and_defaults_kept(misconfigured: LanguageClient, workspace: Path) -> None:
    messages = [m.message for m in misconfigured.messages]
    assert any("'nCtx'" in m and "whole number" in m for m in messages)
    assert any("'maxCompletionTokens'" in m and "between 1 and" in m for m in messages)
    assert any("unknown setting 'noSuchSetting'" in m for m in messages)
    assert misconfigured.recorder.status[-1]["nCtx"] == 4096  # the flag's value, not the bad one
    misconfigured.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"coderag": {"threads": -3}})
    )
    await until(lambda: any("'threads'" in m.message for m in misconfigured.messages), what="a message about threads")
    uri = open_file(misconfigured, workspace / "tasktrack" / "auth.py")
    result = await misconfigured.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=3, character=0),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    assert result is not None  # still serving


@pytest.fixture(scope="module", autouse=True)
def broken_model_file():
    BROKEN.write_bytes(b"GGUF" + b"\x00" * 12)
    yield
    BROKEN.unlink()


@pytest_lsp.fixture(
    config=daemon([*SERVER[: SERVER.index("--model")], "--model", str(BROKEN), *SERVER[SERVER.index("--model") + 2 :]])
)
async def no_model(lsp_client: LanguageClient, workspace: Path):
    await start(lsp_client, workspace, state="error")
    yield
    await lsp_client.shutdown_session()


async def test_a_broken_model_is_reported_and_requests_fail_clearly(no_model: LanguageClient, workspace: Path) -> None:
    status = next(s for s in no_model.recorder.status if s["state"] == "error")
    assert "not-a-model.gguf" in status["error"]
    # the status and the showMessage are separate notifications: either may come first
    await until(lambda: any("not-a-model.gguf" in m.message for m in no_model.messages), what="the showMessage")
    uri = open_file(no_model, workspace / "tasktrack" / "auth.py")
    with pytest.raises(JsonRpcException, match="no model available.*not-a-model.gguf"):
        await no_model.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=3, character=0),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            )
        )
    # documents are still tracked while there is no model
    text = (await no_model.protocol.send_request_async("coderag/documentText", {"uri": uri}))["text"]
    assert text == (workspace / "tasktrack" / "auth.py").read_text()


async def test_ignore_patterns_from_the_editor_apply(misconfigured: LanguageClient, workspace: Path) -> None:
    misconfigured.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"coderag": {"ignoreGlobs": ["tasktrack/api.py"]}})
    )
    open_file(misconfigured, workspace / "tasktrack" / "api.py")
    open_file(misconfigured, workspace / "tasktrack" / "auth.py")
    result = await misconfigured.protocol.send_request_async("coderag/context", {})
    assert [f["path"] for f in result["files"]] == ["tasktrack/auth.py"]


@pytest_lsp.fixture(config=daemon(SERVER))
async def small_window(lsp_client: LanguageClient, workspace: Path):
    await start(lsp_client, workspace, {"nCtx": 1024, "ignoreGlobs": ["!"]})
    yield
    await lsp_client.shutdown_session()


async def test_a_bad_ignore_pattern_is_reported_and_the_rest_applies(
    small_window: LanguageClient, workspace: Path
) -> None:
    assert any("'ignoreGlobs'" in m.message and "gitignore pattern" in m.message for m in small_window.messages)
    small_window.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"ignoreGlobs": ["[z-a]"], "maxFileKiB": 1})
    )
    await until(lambda: any("z-a" in m.message for m in small_window.messages), what="a message about the pattern")
    big = workspace / "tasktrack" / "big.py"
    big.write_text("x = 1\n" * 400)
    open_file(small_window, big)  # 2.4 KiB: left out, so the other setting was applied
    files = (await small_window.protocol.send_request_async("coderag/context", {}))["files"]
    assert files == []


async def test_n_ctx_from_the_editor_sizes_the_file_context(small_window: LanguageClient, workspace: Path) -> None:
    assert small_window.recorder.status[-1]["nCtx"] == 1024  # the flag said 4096
    for name in ("config.py", "auth.py", "scheduler.py"):
        open_file(small_window, workspace / "tasktrack" / name)
    result = await small_window.protocol.send_request_async("coderag/chat", {"question": "What is in config.py?"})
    assert result["stats"]["tokensInContext"] + result["stats"]["tokensGenerated"] <= 1024
