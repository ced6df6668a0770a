"""End-to-end: the real daemon in a subprocess on a tiny model, driven over LSP by pytest-lsp."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import register_lsp_features

from coderag_daemon.lsp.converter import plain_json_converter
from coderag_daemon.workspace.documents import path_to_uri
from fixtures.tiny_models import tiny_model_path

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample_project"
# Completions wait for the whole context, so what a test sees never depends on how far a background
# preload got; tests of the cut ask for it in their settings.
SERVER = [
    sys.executable,
    "-m",
    "coderag_daemon",
    "--model",
    str(tiny_model_path("dense")),
    "--threads",
    "1",
    "--n-ctx",
    "4096",
    "--context-tokens",
    "2500",
    "--preload-delay-ms",
    "100",
    "--log-level",
    "INFO",
    "--completion-wait-tokens",
    "131072",
]


class Recorder:
    """The daemon's own notifications, as they arrive."""

    def __init__(self, client: LanguageClient) -> None:
        self.status: list[dict[str, Any]] = []
        self.deltas: list[dict[str, Any]] = []
        client.feature("coderag/status")(lambda params: self.status.append(params))
        client.feature("coderag/chatDelta")(lambda params: self.deltas.append(params))


def make_client() -> LanguageClient:
    """pytest-lsp's client, reading the daemon's own methods as plain JSON, as the daemon does."""
    client = LanguageClient(converter_factory=plain_json_converter)
    register_lsp_features(client)
    return client


def daemon(command: list[str]) -> ClientServerConfig:
    """A test client of the daemon started with `command`."""
    return ClientServerConfig(server_command=command, client_factory=make_client)


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return result


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The sample project with every file cut to its first 30 lines: the tiny models' byte-level
    vocabulary makes whole files ~3K tokens each, more than a fast test wants."""
    root = tmp_path / "tasktrack"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("QUESTIONS.json", "__pycache__"))
    for path in root.rglob("*.py"):
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:30]))
    return root


def initialize_params(workspace: Path, options: dict[str, Any] | None = None) -> types.InitializeParams:
    return types.InitializeParams(
        capabilities=client_capabilities("visual-studio-code"),
        workspace_folders=[types.WorkspaceFolder(uri=path_to_uri(workspace), name=workspace.name)],
        initialization_options=options,
    )


async def start(
    client: LanguageClient, workspace: Path, options: dict[str, Any] | None = None, state: str = "ready"
) -> None:
    """Initialize a session and wait until the daemon reports `state` (its model loaded or failed)."""
    client.recorder = Recorder(client)
    await client.initialize_session(initialize_params(workspace, options))
    await until(lambda: any(s.get("state") == state for s in client.recorder.status), what=f"state {state}")


@pytest_lsp.fixture(config=daemon(SERVER))
async def client(lsp_client: LanguageClient, workspace: Path):
    await start(lsp_client, workspace)
    yield
    await lsp_client.shutdown_session()


def open_file(client: LanguageClient, path: Path, version: int = 1) -> str:
    uri = path_to_uri(path)
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=path.read_text())
        )
    )
    return uri


def edit(
    client: LanguageClient,
    uri: str,
    version: int,
    line: int,
    character: int,
    text: str,
    end: tuple[int, int] | None = None,
) -> None:
    start = types.Position(line=line, character=character)
    stop = types.Position(line=end[0], character=end[1]) if end else start
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(range=types.Range(start=start, end=stop), text=text)
            ],
        )
    )
