"""Over real LSP: the warm-up of the open files gives way to any request, and goes on afterwards
until the cache holds the whole file context."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_lsp
from pytest_lsp import LanguageClient

from .conftest import SAMPLE, SERVER, daemon, open_file, start, until
from .test_daemon import request

FILES = ("config.py", "auth.py", "scheduler.py", "storage.py", "api.py", "models.py")
LINES = 90
"""Lines of each file: ~3,000 tokens of context in all, six batches for the warm-up to decode,
so a request sent when it starts finds it under way."""


@pytest_lsp.fixture(config=daemon([*SERVER, "--n-ctx", "8192", "--context-tokens", "6000"]))
async def client(lsp_client: LanguageClient, workspace: Path):
    await start(lsp_client, workspace)
    yield
    await lsp_client.shutdown_session()


@pytest.mark.parametrize("method", ["coderag/context", "coderag/clearCache"])
async def test_a_warm_up_interrupted_by_a_request_goes_on_afterwards(
    client: LanguageClient, workspace: Path, method: str
) -> None:
    for name in FILES:
        path = workspace / "tasktrack" / name
        path.write_text("".join((SAMPLE / "tasktrack" / name).read_text().splitlines(keepends=True)[:LINES]))
        open_file(client, path)
    files = (await request(client, "coderag/context", {}))["files"]  # answered before the warm-up starts
    whole = files[-1]["start"] + files[-1]["tokens"]
    status = client.recorder.status
    await until(lambda: any(s["state"] == "preloading" for s in status), what="the warm-up")
    answered = len(status)
    await request(client, method, {})
    interrupted = [s["tokensCached"] for s in status[answered:] if s["state"] == "ready"]
    assert interrupted and interrupted[0] < whole, (interrupted, whole)  # it gave way before it was done

    await until(lambda: status[-1]["state"] == "ready" and status[-1]["tokensCached"] >= whole, what="a warm cache")
    assert all(f["cached"] for f in (await request(client, "coderag/context", {}))["files"])
