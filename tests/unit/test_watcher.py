"""DiskWatcher: real filesystem events, coalesced and filtered by the admission policy."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from coderag_daemon.workspace.admission import AdmissionPolicy
from coderag_daemon.workspace.watcher import DiskWatcher

from .conftest import write

TIMEOUT = 5.0
Event = tuple[str, ...]


class Recorder:
    """Collects callbacks from the watcher thread and lets the test wait for them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._seen = 0
        self._cond = threading.Condition()

    def change(self, path: str) -> None:
        self._add(("change", path))

    def delete(self, path: str) -> None:
        self._add(("delete", path))

    def move(self, src: str, dst: str) -> None:
        self._add(("move", src, dst))

    def _add(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, event: Event) -> list[Event]:
        """Wait until ``event`` is reported anew; return what was reported since the last wait, up to it."""
        with self._cond:
            found = self._cond.wait_for(lambda: event in self.events[self._seen :], TIMEOUT)
            assert found, f"{event} not in {self.events[self._seen :]}"
            start, self._seen = self._seen, self.events.index(event, self._seen) + 1
            return self.events[start : self._seen]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def make_watcher(root: Path, recorder: Recorder) -> Iterator[Callable[..., DiskWatcher]]:
    started: list[DiskWatcher] = []

    def make() -> DiskWatcher:
        watcher = DiskWatcher(AdmissionPolicy([root]), recorder.change, recorder.delete, recorder.move, delay=0.05)
        watcher.start()
        started.append(watcher)
        return watcher

    yield make
    for watcher in started:
        watcher.stop()


@pytest.fixture
def watcher(make_watcher) -> DiskWatcher:
    return make_watcher()


def test_written_file_is_reported(watcher: DiskWatcher, root: Path, recorder: Recorder) -> None:
    path = write(root / "pkg" / "a.py")
    assert recorder.wait_for(("change", str(path))) == [("change", str(path))]


def test_burst_of_writes_coalesces(root: Path, recorder: Recorder) -> None:
    path = root / "hot.py"
    with DiskWatcher(AdmissionPolicy([root]), recorder.change, recorder.delete, recorder.move, delay=0.1):
        for i in range(200):
            with open(path, "a") as f:
                f.write(f"line {i}\n")
        write(root / "sentinel.py")
        recorder.wait_for(("change", str(root / "sentinel.py")))
    reports = [e for e in recorder.events if e[1] == str(path)]
    assert 1 <= len(reports) <= 5, reports
    assert set(reports) == {("change", str(path))}


def test_delete_is_reported(watcher: DiskWatcher, root: Path, recorder: Recorder) -> None:
    path = write(root / "a.py")
    recorder.wait_for(("change", str(path)))
    path.unlink()
    recorder.wait_for(("delete", str(path)))


def test_move_is_reported_then_destination_refreshed(watcher: DiskWatcher, root: Path, recorder: Recorder) -> None:
    dst = root / "sub" / "b.py"
    dst.parent.mkdir()  # before the first event, so it is watched when the move happens
    src = write(root / "a.py")
    recorder.wait_for(("change", str(src)))
    src.rename(dst)
    events = recorder.wait_for(("change", str(dst)))
    assert events[-2:] == [("move", str(src), str(dst)), ("change", str(dst))]


def test_atomic_save_reports_the_target_not_the_temp_file(watcher: DiskWatcher, root: Path, recorder: Recorder) -> None:
    target = write(root / "a.py", "old\n")
    recorder.wait_for(("change", str(target)))
    tmp = write(root / "a.py.tmp123", "new\n")
    os.replace(tmp, target)
    events = recorder.wait_for(("change", str(target)))
    assert ("change", str(tmp)) not in events
    assert events[-2:] == [("move", str(tmp), str(target)), ("change", str(target))]


def test_ignored_paths_are_not_reported(watcher: DiskWatcher, root: Path, recorder: Recorder) -> None:
    write(root / ".gitignore", "*.log\n")
    recorder.wait_for(("change", str(root / ".gitignore")))
    write(root / "node_modules" / "lib" / "index.js")
    write(root / ".env", "TOKEN=1\n")
    write(root / "debug.log", "noise\n")
    write(root.parent / "outside.py")
    events = recorder.wait_for(("change", str(write(root / "sentinel.py"))))
    assert events == [("change", str(root / "sentinel.py"))]


def test_gitignore_change_applies_to_later_events(watcher: DiskWatcher, root: Path, recorder: Recorder) -> None:
    first = write(root / "a.tmp")
    recorder.wait_for(("change", str(first)))  # the root's (absent) .gitignore is now cached
    write(root / ".gitignore", "*.tmp\n")
    recorder.wait_for(("change", str(root / ".gitignore")))
    write(root / "b.tmp")
    events = recorder.wait_for(("change", str(write(root / "sentinel.py"))))
    assert ("change", str(root / "b.tmp")) not in events


def test_file_whose_content_becomes_unadmissible_is_deleted(
    watcher: DiskWatcher, root: Path, recorder: Recorder
) -> None:
    path = write(root / "data.txt", "text\n")
    recorder.wait_for(("change", str(path)))
    write(path, b"\x00binary")
    recorder.wait_for(("delete", str(path)))


def test_file_replaced_by_a_symlink_out_of_the_roots_is_deleted(
    watcher: DiskWatcher, root: Path, tmp_path: Path, recorder: Recorder
) -> None:
    path = write(root / "config.py")
    recorder.wait_for(("change", str(path)))
    outside = write(tmp_path / "outside.py", "OUTSIDE = 1\n")
    path.unlink()
    path.symlink_to(outside)
    events = recorder.wait_for(("delete", str(path)))
    assert ("change", str(path)) not in events


def test_a_gitignore_that_ignores_itself_is_still_reported(
    watcher: DiskWatcher, root: Path, recorder: Recorder
) -> None:
    """Its rules changed: files the caller holds below it may be ignored now."""
    write(root / "tmp" / "a.py")
    recorder.wait_for(("change", str(root / "tmp" / "a.py")))
    gitignore = write(root / "tmp" / ".gitignore", "*\n")
    recorder.wait_for(("change", str(gitignore)))
    write(root / "node_modules" / ".gitignore", "*\n")  # in a refused directory: nothing changed
    events = recorder.wait_for(("change", str(write(root / "sentinel.py"))))
    assert events == [("change", str(root / "sentinel.py"))]


def test_directory_delete_and_move_are_reported_once(watcher: DiskWatcher, root: Path, recorder: Recorder) -> None:
    files = [write(root / "pkg" / name) for name in ("a.py", "b.py")]
    for f in files:
        recorder.wait_for(("change", str(f)))
    (root / "pkg").rename(root / "lib")
    recorder.wait_for(("move", str(root / "pkg"), str(root / "lib")))
    for f in (root / "lib").iterdir():
        f.unlink()
    (root / "lib").rmdir()
    recorder.wait_for(("delete", str(root / "lib")))
    assert [e for e in recorder.events if e[0] == "move"] == [("move", str(root / "pkg"), str(root / "lib"))]


def test_directory_moved_into_view_reports_its_files(watcher: DiskWatcher, root: Path, recorder: Recorder) -> None:
    write(root / "build" / "gen" / "x.py")  # refused: inside build/
    write(root.parent / "outside" / "y.py")
    (root / "build" / "gen").rename(root / "gen")
    recorder.wait_for(("change", str(root / "gen" / "x.py")))
    (root.parent / "outside").rename(root / "moved_in")
    recorder.wait_for(("change", str(root / "moved_in" / "y.py")))
    (root / "gen").rename(root / "build" / "gen2")  # moved out of view
    recorder.wait_for(("delete", str(root / "gen")))


def test_failing_callback_does_not_stop_the_watcher(root: Path, recorder: Recorder) -> None:
    def flaky_change(path: str) -> None:
        recorder.change(path)
        if path.endswith("boom.py"):
            raise RuntimeError("boom")

    with DiskWatcher(AdmissionPolicy([root]), flaky_change, recorder.delete, recorder.move, delay=0.05):
        recorder.wait_for(("change", str(write(root / "boom.py"))))
        recorder.wait_for(("change", str(write(root / "after.py"))))


def test_a_new_watcher_follows_roots_added_and_removed(tmp_path: Path, root: Path, recorder: Recorder) -> None:
    """New workspace folders take a new watcher on the policy's roots, as the server does."""
    other = (tmp_path / "other").resolve()
    other.mkdir()
    policy = AdmissionPolicy([root, other])
    with DiskWatcher(policy, recorder.change, recorder.delete, recorder.move, delay=0.05):
        recorder.wait_for(("change", str(write(other / "o.py"))))
    policy.remove_root(other)
    with DiskWatcher(policy, recorder.change, recorder.delete, recorder.move, delay=0.05):
        write(other / "ignored.py")
        events = recorder.wait_for(("change", str(write(root / "sentinel.py"))))
    assert ("change", str(other / "ignored.py")) not in events


def test_stop_joins_threads_and_can_restart(root: Path, recorder: Recorder) -> None:
    watcher = DiskWatcher(AdmissionPolicy([root]), recorder.change, recorder.delete, recorder.move, delay=0.05)
    before = set(threading.enumerate())
    with watcher:
        with pytest.raises(RuntimeError):
            watcher.start()
    assert set(threading.enumerate()) <= before
    watcher.stop()  # idempotent
    with watcher:
        recorder.wait_for(("change", str(write(root / "again.py"))))
    assert set(threading.enumerate()) <= before


def test_missing_root_raises_and_leaves_the_watcher_stopped(root: Path, recorder: Recorder) -> None:
    policy = AdmissionPolicy([root / "missing"])
    watcher = DiskWatcher(policy, recorder.change, recorder.delete, recorder.move, delay=0.05)
    with pytest.raises(FileNotFoundError):
        watcher.start()
    watcher.stop()
    policy.remove_root(root / "missing")
    policy.add_root(root)
    with watcher:
        recorder.wait_for(("change", str(write(root / "a.py"))))
