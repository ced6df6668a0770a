"""The index thread's queue on its own: coalescing by path, the per-path rate limit, overflow to a rescan."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from coderag_daemon.index.build import BuildReport, Progress
from coderag_daemon.index.changes import DISK, REMOVE, Batch, Change, ChangeQueue


class Recorder:
    """Handlers that note what the index thread was asked to do; a build waits for ``release``."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, Batch]] = []
        self.builds = 0
        self.building = threading.Event()
        self.release = threading.Event()

    def apply(self, batch: Batch) -> None:
        self.batches.append((time.monotonic(), batch))

    def build(self, progress: Progress | None) -> BuildReport:
        self.builds += 1
        self.building.set()
        assert self.release.wait(10)
        return BuildReport(0, 0, 0, 0, 0, 0.0)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def open_queue(recorder: Recorder, min_update_interval: float = 0.0, max_pending: int = 100) -> ChangeQueue:
    return ChangeQueue(min_update_interval, max_pending, apply=recorder.apply, build=recorder.build, save=lambda: None)


@pytest.fixture
def queue(recorder: Recorder) -> Iterator[ChangeQueue]:
    q = open_queue(recorder)
    yield q
    recorder.release.set()
    q.close()


def hold_in_build(queue: ChangeQueue, recorder: Recorder) -> None:
    """Keep the index thread busy, so that changes pile up."""
    queue.request_build(None)
    assert recorder.building.wait(10)


def test_the_latest_change_of_a_path_wins(queue: ChangeQueue, recorder: Recorder) -> None:
    hold_in_build(queue, recorder)
    queue.put("/w/a.py", DISK)
    queue.put("/w/b.py", Change("text", "x = 1"))
    queue.put("/w/a.py", REMOVE)
    assert len(queue) == 2
    recorder.release.set()
    assert queue.wait_idle(10)
    assert [batch for _, batch in recorder.batches] == [[("/w/a.py", REMOVE), ("/w/b.py", Change("text", "x = 1"))]]


def test_a_path_is_applied_at_most_once_per_interval(recorder: Recorder) -> None:
    queue = open_queue(recorder, min_update_interval=0.3)
    try:
        queue.put("/w/a.py", DISK)
        assert queue.wait_idle(10)
        queue.put("/w/a.py", DISK)
        queue.put("/w/b.py", DISK)  # another path is not held back
        assert queue.wait_idle(10)
    finally:
        queue.close()
    (first, _), (_, b), (again, a) = recorder.batches
    assert b == [("/w/b.py", DISK)] and a == [("/w/a.py", DISK)]
    assert again - first >= 0.3


def test_too_many_paths_at_once_become_one_rescan(recorder: Recorder) -> None:
    queue = open_queue(recorder, max_pending=3)
    try:
        hold_in_build(queue, recorder)
        for i in range(10):
            queue.put(f"/w/{i}.py", DISK)
        recorder.release.set()
        assert queue.wait_idle(10)
    finally:
        queue.close()
    assert recorder.builds == 2  # the one asked for, then the rescan
    # each overflow drops the queue; only the paths after the last one are followed one by one
    assert [key for _, batch in recorder.batches for key, _ in batch] == ["/w/8.py", "/w/9.py"]
