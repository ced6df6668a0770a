"""Every daemon the tests start, in-process or as a subprocess, keeps its workspace index and its
saved caches in the session's temporary directory, never in the user's cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["CODERAG_INDEX_DIR"] = str(tmp_path_factory.mktemp("index"))
    os.environ["CODERAG_STATE_DIR"] = str(tmp_path_factory.mktemp("states"))
