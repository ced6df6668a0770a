"""The server's event-loop state (shown suggestions, the loading progress, work-done progresses) is
touched on the event loop only: the disk watcher, the model worker and the index thread hand their
calls over. Each test holds the loop while another thread calls in, so a change made on the wrong
thread shows before the loop could have made it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from coderag_daemon.lsp.progress import WorkProgress
from coderag_daemon.lsp.server import CoderagServer
from coderag_daemon.options import Options
from coderag_daemon.worker.model_worker import Status

URI = "file:///ws/calc.py"


class FakeProgress:
    """The client's side of work-done progress: every call, with the thread it came from."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, int]] = []

    async def create_async(self, token: str) -> None:
        self.calls.append(("create", token, threading.get_ident()))

    def begin(self, token: str, value: Any) -> None:
        self.calls.append(("begin", token, threading.get_ident()))

    def report(self, token: str, value: Any) -> None:
        self.calls.append(("report", token, threading.get_ident()))

    def end(self, token: str, value: Any) -> None:
        self.calls.append(("end", token, threading.get_ident()))


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CoderagServer]:
    """A server whose event loop runs on a thread of its own, talking to a fake client."""
    monkeypatch.setenv("CODERAG_INDEX_DIR", str(tmp_path / "index"))
    server = CoderagServer(Options())
    server.protocol.client_capabilities = types.ClientCapabilities(
        window=types.WindowClientCapabilities(work_done_progress=True)
    )
    server.protocol.progress = FakeProgress()
    server.sent = []
    server.protocol.notify = lambda method, params=None: server.sent.append((method, threading.get_ident()))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="event loop", daemon=True)
    thread.start()
    server.loop = loop
    server.loop_thread = thread.ident
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        server.worker.stop()
        server.index.close()


@contextmanager
def loop_held(server: CoderagServer) -> Iterator[None]:
    """The event loop is busy with something else until the block ends."""
    entered, release = threading.Event(), threading.Event()
    server.loop.call_soon_threadsafe(lambda: (entered.set(), release.wait(10)))
    assert entered.wait(10)
    try:
        yield
    finally:
        release.set()


def on_loop(server: CoderagServer, fn: Callable[[], Any]) -> Any:
    """`fn()` on the event loop, after everything handed to it before."""
    done: Future = Future()
    server.loop.call_soon_threadsafe(lambda: done.set_result(fn()))
    return done.result(10)


def from_thread(fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn` on a thread of its own (a watcher's, a worker's), and wait for it to return."""
    thread = threading.Thread(target=fn, args=args)
    thread.start()
    thread.join(10)


def test_a_change_on_disk_forgets_the_shown_suggestions_on_the_event_loop(server: CoderagServer) -> None:
    on_loop(server, lambda: server.completions.shown.remember(URI, "def add(", "", "a, b):"))
    on_event = server._disk(lambda *paths: False, lambda *paths: None)
    with loop_held(server):  # a lookup iterating the suggestions may be under way
        from_thread(on_event, "/ws/calc.py")
        assert server.completions.shown.lookup(URI, "def add(a", "") == ", b):"  # untouched by the watcher's thread
    assert on_loop(server, lambda: server.completions.shown.lookup(URI, "def add(a", "")) is None


def test_the_model_workers_status_is_handled_on_the_event_loop(server: CoderagServer) -> None:
    on_loop(server, lambda: setattr(server.loading, "token", "loading-token"))
    with loop_held(server):
        from_thread(server._status_changed, Status("error", error="broken model"))
        assert server.loading.token == "loading-token" and server._shown_error is None
    assert on_loop(server, lambda: (server.loading.token, server._shown_error)) == (None, "broken model")
    assert [(name, token) for name, token, _ in server.protocol.progress.calls] == [("end", "loading-token")]
    assert {thread for *_, thread in server.protocol.progress.calls} == {server.loop_thread}
    assert ("coderag/status", server.loop_thread) in server.sent


def test_work_progress_from_another_thread_is_kept_on_the_event_loop(server: CoderagServer) -> None:
    progress = WorkProgress(server, "coderag: preloading", threshold=10)
    with loop_held(server):
        from_thread(progress, 10, 100)  # a prefill's first batch, on the worker's thread
        assert progress.token is None
    on_loop(server, lambda: None)
    on_loop(server, lambda: None)  # the progress was created: the client answered
    from_thread(progress, 50, 100)
    from_thread(progress.finish)
    on_loop(server, lambda: None)
    calls = server.protocol.progress.calls
    assert [name for name, *_ in calls] == ["create", "begin", "report", "end"]
    assert {thread for *_, thread in calls} == {server.loop_thread}


def test_work_progress_begins_again_for_work_after_it_finished(server: CoderagServer) -> None:
    """A preload that gave way and goes on later reports its second run too."""
    progress = WorkProgress(server, "coderag: preloading", threshold=10, resumes=True)
    for done in (10, 20):  # the first run, then it gives way
        progress(done, 100)
        on_loop(server, lambda: None)
    progress.finish()
    progress(30, 100)  # the run that goes on
    on_loop(server, lambda: None)
    on_loop(server, lambda: None)
    calls = server.protocol.progress.calls
    assert [name for name, *_ in calls] == ["create", "begin", "report", "end", "create", "begin"]
    assert calls[0][1] != calls[4][1]


def test_a_requests_progress_ends_for_good_when_the_request_does(server: CoderagServer) -> None:
    """A chat cancelled during its prefill: the request answers at once, its job stops only at the
    next batch, whose report must not begin a progress that nothing ends."""
    progress = WorkProgress(server, "coderag: chat", threshold=10)
    progress(10, 100)
    on_loop(server, lambda: None)
    on_loop(server, lambda: None)
    progress.finish()  # the request was cancelled
    progress(20, 100)  # the batch that was under way
    on_loop(server, lambda: None)
    on_loop(server, lambda: None)
    calls = server.protocol.progress.calls
    assert [name for name, *_ in calls] == ["create", "begin", "end"]
