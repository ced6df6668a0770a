"""Work-done progress ($/progress) for the daemon's long work: a model's loading, a prefill, an
index build. All of its state lives on the event loop; other threads hand their calls over."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from .server import CoderagServer

log = logging.getLogger(__name__)


def supports_progress(ls: CoderagServer) -> bool:
    window = ls.client_capabilities.window
    return window is not None and bool(window.work_done_progress)


class WorkProgress:
    """Progress for work on more than `threshold` units: a prefill's tokens (called from the worker
    thread after every batch), an index build's files (from the index thread).

    The progress is created on the client only once the work turns out to be long, and reports wait
    until the client has accepted it. With `resumes` (a preload, which goes on after it gave way),
    work reported after `finish` begins a new one; otherwise it is the rest of a cancelled job's
    batch, and ignored."""

    def __init__(
        self, ls: CoderagServer, title: str, threshold: int = 1024, unit: str = "tokens", resumes: bool = False
    ) -> None:
        self.ls, self.title, self.threshold, self.unit, self.resumes = ls, title, threshold, unit, resumes
        self.token: str | None = None
        self.ready = self.finished = False

    def __call__(self, done: int, total: int) -> None:
        """From any thread."""
        if total >= self.threshold and supports_progress(self.ls):
            self.ls.call_soon(self._update, done, total)

    def _update(self, done: int, total: int) -> None:
        if self.finished and not self.resumes:
            return
        if self.token is None:
            self.token, self.finished = str(uuid.uuid4()), False
            asyncio.ensure_future(self._begin(self.token))
        elif self.ready:
            report = types.WorkDoneProgressReport(
                message=f"{done} of {total} {self.unit}", percentage=100 * done // total
            )
            self.ls.work_done_progress.report(self.token, report)

    async def _begin(self, token: str) -> None:
        try:
            await self.ls.work_done_progress.create_async(token)
        except Exception as exc:  # a client may refuse; the work goes on regardless
            log.debug("progress refused: %s", exc)
            return
        self.ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=self.title, percentage=0))
        self.ready = True
        if self.finished:
            self._finish()

    def finish(self) -> None:
        """From any thread; the end is sent once, on the event loop."""
        self.ls.call_soon(self._finish)

    def _finish(self) -> None:
        self.finished = True
        if self.ready and self.token is not None:
            self.ready = False
            self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd())
            self.token = None


class LoadingProgress:
    """The model's loading: begun once the client accepts it (unless the loading ended meanwhile),
    ended by the first status that is not "loading". On the event loop."""

    def __init__(self, ls: CoderagServer) -> None:
        self.ls = ls
        self.token: str | None = None

    async def begin(self) -> None:
        token = str(uuid.uuid4())
        try:
            await self.ls.work_done_progress.create_async(token)
        except Exception as exc:  # the client may refuse progress; loading goes on regardless
            log.debug("no progress for model loading: %s", exc)
            return
        if self.ls.worker.status().state == "loading":
            self.ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="coderag: loading model"))
            self.token = token

    def status(self, state: str) -> None:
        if state != "loading" and self.token is not None:
            token, self.token = self.token, None
            self.ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=state))
