"""The daemon with a remote engine: the tiny dense model served by llama-server on 127.0.0.1, driven
over LSP as with the local engine (completion, type-through, chat with sources, cancellation,
preload, status figures), and what goes wrong: the server stopped and started again mid-session, a
wrong URL, a wrong API key."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from coderag_daemon.bench.llama_server import LlamaServer, ServerBuild, ServerSettings
from fixtures.tiny_models import tiny_model_path

from .conftest import SERVER, edit, make_client, open_file, start, until
from .test_daemon import context_paths, inline_params, request

KEY = "test-key-7f3a"


class Server:
    """llama-server on the tiny dense model, which a test may stop and start again on its port."""

    def __init__(self, log_dir: Path, *flags: str) -> None:
        self.flags, self.log_dir = flags, log_dir
        self.process: LlamaServer | None = None
        self.port: int | None = None
        self.start()

    def start(self) -> None:
        self.process = LlamaServer(
            ServerBuild().ensure(),
            tiny_model_path("dense"),
            n_ctx=4096,
            threads=1,
            settings=ServerSettings("test", self.flags),
            log=self.log_dir / "llama-server.log",
            port=self.port,
            trace=False,
        )
        self.port = self.process.port

    def stop(self) -> None:
        if self.process is not None:
            self.process.close()
            self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("llama-server"))
    yield server
    server.stop()


@asynccontextmanager
async def daemon(
    workspace: Path, url: str, *flags: str, state: str = "ready", env: dict[str, str] | None = None
) -> AsyncIterator[LanguageClient]:
    """A daemon on `workspace` whose engine is the server at `url`, once it reports `state`."""
    client = make_client()
    await client.start_io(*SERVER, "--engine-url", url, *flags, env={**os.environ, **(env or {})})
    try:
        await start(client, workspace, state=state)
        yield client
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.fixture
async def client(llama_server: Server, workspace: Path) -> AsyncIterator[LanguageClient]:
    if llama_server.process is None:
        llama_server.start()
    async with daemon(workspace, llama_server.url) as client:
        yield client


def last_status(client: LanguageClient) -> dict[str, Any]:
    return client.recorder.status[-1]


async def test_status_says_remote_and_the_figures_are_the_servers(client: LanguageClient, workspace: Path) -> None:
    status = last_status(client)
    assert status["state"] == "ready" and status["strategy"] == "remote" and status["nCtx"] == 4096
    uri = open_file(client, workspace / "tasktrack" / "auth.py")
    result = await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
    assert result is not None and len(result.items) == 1
    figures = await until(lambda: [s for s in client.recorder.status if s.get("lastRequest")], what="figures")
    last = figures[-1]["lastRequest"]
    assert last["tokensReprocessed"] > 0 and last["tokensGenerated"] > 0 and last["generationMs"] > 0
    assert last["tokensInContext"] == last["tokensKept"] + last["tokensReprocessed"]


async def test_completion_and_type_through(client: LanguageClient, workspace: Path) -> None:
    uri = open_file(client, workspace / "tasktrack" / "auth.py")
    result = await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
    shown = result.items[0].insert_text
    assert len(shown) >= 2

    def model_calls() -> int:
        return sum(m.message.startswith("completion:") for m in client.log_messages)

    calls = await until(model_calls, what="the completion's log line")
    edit(client, uri, 2, 10, 0, shown[0])
    again = await client.text_document_inline_completion_async(inline_params(uri, 10, 1))
    assert again.items[0].insert_text == shown[1:]
    assert model_calls() == calls


async def test_chat_streams_and_cites_sources(client: LanguageClient, workspace: Path) -> None:
    uri = open_file(client, workspace / "tasktrack" / "auth.py")
    await until(lambda: not (client.recorder.status[-1].get("state") == "loading"), what="loaded")
    result = await request(
        client, "coderag/chat", {"question": "How are tasks stored and scheduled?", "uri": uri, "token": "t1"}
    )
    streamed = "".join(d["delta"] for d in client.recorder.deltas if d["token"] == "t1")
    assert streamed == result["answer"] and result["stats"]["tokensReprocessed"] > 0
    final = [d for d in client.recorder.deltas if d["token"] == "t1"][-1]
    assert final["done"] and final["sources"] == result["sources"]
    if result["stats"].get("retrievedTokens"):  # the index may still be building on a slow machine
        assert result["sources"] and all(s["path"] != "tasktrack/auth.py" for s in result["sources"])


async def test_cancel_stops_a_chat(client: LanguageClient, workspace: Path) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"coderag": {"maxChatTokens": 4096}})
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
    assert await context_paths(client) == ["tasktrack/api.py"]
    await asyncio.sleep(0.3)
    assert len(client.recorder.deltas) == streamed


async def test_preload_warms_the_servers_slot(client: LanguageClient, workspace: Path) -> None:
    for name in ("config.py", "auth.py"):
        open_file(client, workspace / "tasktrack" / name)
    await until(lambda: any(s["state"] == "preloading" for s in client.recorder.status), what="a preload")
    await until(lambda: last_status(client)["state"] == "ready" and last_status(client).get("last"), what="ready")
    context = await request(client, "coderag/context", {})
    assert [f["cached"] for f in context["files"]] == [True, True], context
    answer = await request(client, "coderag/chat", {"question": "What does config.py hold?"})
    assert answer["stats"]["tokensKept"] >= sum(f["tokens"] for f in context["files"])


async def test_the_server_stopped_and_started_again(
    client: LanguageClient, workspace: Path, llama_server: Server
) -> None:
    uri = open_file(client, workspace / "tasktrack" / "auth.py")
    first = await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
    llama_server.stop()
    down = await until(lambda: last_status(client)["state"] == "error" and last_status(client), what="error state")
    assert "cannot reach the engine server" in down["error"] and llama_server.url in down["error"]
    with pytest.raises(JsonRpcException, match="engine server"):
        await client.text_document_inline_completion_async(inline_params(uri, 12, 0))
    assert (await request(client, "coderag/documentText", {"uri": uri}))["version"] == 1  # the editor's state
    llama_server.start()
    await until(lambda: last_status(client)["state"] == "ready", timeout=60, what="ready again")
    again = await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
    assert again.items[0].insert_text == first.items[0].insert_text
    assert client.recorder.status[-1]["state"] in ("ready", "busy", "preloading")


async def test_a_wrong_url_is_an_error_in_the_status(workspace: Path) -> None:
    async with daemon(workspace, "http://127.0.0.1:9", state="error") as client:
        error = last_status(client)["error"]
        assert "cannot reach the engine server at http://127.0.0.1:9" in error and "check" in error
        uri = open_file(client, workspace / "tasktrack" / "auth.py")
        with pytest.raises(JsonRpcException, match="cannot reach"):
            await client.text_document_inline_completion_async(inline_params(uri, 10, 0))


async def test_a_wrong_api_key_is_an_error_in_the_status(workspace: Path, tmp_path: Path) -> None:
    server = Server(tmp_path, "--api-key", KEY)
    try:
        async with daemon(workspace, server.url, state="error", env={"CODERAG_ENGINE_API_KEY": "wrong"}) as client:
            error = last_status(client)["error"]
            assert "refused the API key (HTTP 401)" in error and "CODERAG_ENGINE_API_KEY" in error
            assert "wrong" not in error
        key_file = tmp_path / "key"
        key_file.write_text(KEY + "\n")
        async with daemon(workspace, server.url, "--engine-api-key", f"file:{key_file}") as client:
            uri = open_file(client, workspace / "tasktrack" / "auth.py")
            result = await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
            assert result is not None and result.items
        logs = "".join(m.message for m in client.log_messages)
        assert KEY not in logs
    finally:
        server.stop()


async def test_an_openai_compatible_server(llama_server: Server, workspace: Path) -> None:
    """llama-server's OpenAI API (/v1), standing in for vLLM or SGLang: completion, chat, preload."""
    if llama_server.process is None:
        llama_server.start()
    async with daemon(workspace, llama_server.url + "/v1") as client:
        uri = open_file(client, workspace / "tasktrack" / "auth.py")
        result = await client.text_document_inline_completion_async(inline_params(uri, 10, 0))
        assert result is not None and len(result.items) == 1
        answer = await request(client, "coderag/chat", {"question": "What does auth.py do?", "token": "o"})
        streamed = "".join(d["delta"] for d in client.recorder.deltas if d["token"] == "o")
        assert streamed == answer["answer"] and answer["stats"]["tokensReprocessed"] > 0
        assert last_status(client)["strategy"] == "remote"
