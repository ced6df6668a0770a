"""The model worker: interactive jobs preempt a preload within one batch; cancellation; errors."""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from pathlib import Path

import pytest

from coderag_daemon.engine import EngineOptions
from coderag_daemon.worker.model_worker import MODEL_NICENESS, ModelUnavailable, ModelWorker, Session, Status
from fixtures.tiny_models import tiny_model_path

OPTIONS = EngineOptions(n_ctx=8192, n_batch=32, n_threads=1)


def wait(predicate, timeout: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def worker():  # noqa: ANN201
    statuses: list[Status] = []
    w = ModelWorker(on_status=statuses.append)
    w.statuses = statuses
    w.load(str(tiny_model_path("dense")), OPTIONS)
    wait(lambda: w.status().state == "ready")
    yield w
    w.stop()


def test_interactive_job_preempts_a_preload_within_one_batch(worker: ModelWorker) -> None:
    long_target = [[(i * 7) % 900 + 10 for i in range(6000)]]
    preload_started = threading.Event()
    outcome: dict[str, object] = {}

    def preload(session: Session) -> None:
        preload_started.set()
        outcome["preload"] = session.update(long_target)

    worker.schedule_preload(preload, delay=0)
    preload_started.wait(10)
    wait(lambda: worker.status().state == "preloading")
    future = worker.submit(lambda session: len(session.cache.tokens), label="interactive")
    cached_when_interactive_ran = future.result(timeout=20)
    stats = outcome["preload"]
    assert not stats.completed  # it gave way
    assert stats.tokens_reprocessed < len(long_target[0])
    # it stopped at a batch boundary: what it decoded is exactly what the cache holds
    assert cached_when_interactive_ran == stats.tokens_reprocessed
    assert cached_when_interactive_ran % OPTIONS.n_batch == 0


def test_a_newer_preload_replaces_a_pending_one(worker: ModelWorker) -> None:
    ran: list[str] = []
    worker.schedule_preload(lambda s: ran.append("old"), delay=0.3)
    worker.schedule_preload(lambda s: ran.append("new"), delay=0.05)
    wait(lambda: ran)
    time.sleep(0.4)
    assert ran == ["new"]


def test_cancel_before_start_and_errors_reach_the_caller(worker: ModelWorker) -> None:
    gate = threading.Event()
    blocker = worker.submit(lambda s: gate.wait(10), label="blocker")
    cancel = threading.Event()
    queued = worker.submit(lambda s: "ran", label="queued", cancel=cancel)
    cancel.set()
    gate.set()
    blocker.result(timeout=10)
    with pytest.raises(ModelUnavailable, match="cancelled"):
        queued.result(timeout=10)

    def boom(session: Session) -> None:
        raise ValueError("broken job")

    with pytest.raises(ValueError, match="broken job"):
        worker.submit(boom).result(timeout=10)
    assert worker.submit(lambda s: "still alive").result(timeout=10) == "still alive"


def test_a_broken_model_leaves_the_worker_answering_with_the_reason(tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model")
    w = ModelWorker()
    try:
        w.load(str(bad), OPTIONS)
        wait(lambda: w.status().state == "error")
        assert "not a GGUF" in (w.status().error or "")
        with pytest.raises(ModelUnavailable, match="not a GGUF"):
            w.submit(lambda s: None).result(timeout=10)
    finally:
        w.stop()


def _niceness_of_threads() -> dict[int, int]:
    out = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out[int(task.name)] = int(fields[16])  # field 19 of stat, counted after the command name
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="threads have their own nice value only on Linux")
def test_model_threads_run_below_the_event_loop() -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    w = ModelWorker()
    w.load(str(tiny_model_path("dense")), EngineOptions(n_ctx=1024, n_batch=64, n_threads=2))
    try:
        wait(lambda: w.status().state == "ready")
        w.submit(lambda session: session.update([[(i * 7) % 900 + 10 for i in range(300)]])).result(timeout=60)
        lowered = [tid for tid, nice in _niceness_of_threads().items() if nice == base + MODEL_NICENESS]
        assert w._thread.native_id in lowered
        assert len(lowered) >= 2  # and the compute thread it started for the second core
        assert (
            threading.get_native_id() not in lowered
            and os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
        )
    finally:
        w.stop()


# --- a model on its way ---------------------------------------------------------------------------


def not_done_soon(future: Future) -> bool:
    """The job waits: no answer within a moment (a worker that does not wait answers at once)."""
    return not futures_wait([future], timeout=0.3).done


def test_a_job_that_comes_before_the_load_waits_for_the_model() -> None:
    w = ModelWorker()
    try:
        early = w.submit(lambda session: "answered", label="early")
        assert not_done_soon(early)
        w.load(str(tiny_model_path("dense")), OPTIONS)
        assert early.result(timeout=30) == "answered"
    finally:
        w.stop()


def test_a_job_waits_only_so_long_for_a_model_nobody_asks_for() -> None:
    w = ModelWorker(model_wait=0.2)
    try:
        with pytest.raises(ModelUnavailable, match=r"^no model available: no model was asked to load within 0\.2 s$"):
            w.submit(lambda session: None).result(timeout=10)
    finally:
        w.stop()


def test_jobs_waiting_for_a_model_that_fails_to_load_get_its_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model")
    w = ModelWorker()
    try:
        early = w.submit(lambda session: None)
        assert not_done_soon(early)
        w.load(str(bad), OPTIONS)
        with pytest.raises(ModelUnavailable, match="not a GGUF"):
            early.result(timeout=10)
    finally:
        w.stop()


def test_jobs_waiting_for_a_model_get_the_reason_none_can_be_loaded() -> None:
    w = ModelWorker()
    try:
        early = w.submit(lambda session: None)
        assert not_done_soon(early)
        w.fail("the default model is not installed")
        with pytest.raises(ModelUnavailable, match="^no model available: the default model is not installed$"):
            early.result(timeout=10)
        with pytest.raises(ModelUnavailable, match="not installed"):  # and later ones at once
            w.submit(lambda session: None).result(timeout=1)
    finally:
        w.stop()


# --- a preload that gave way ------------------------------------------------------------------------


class FakePreload:
    """A preload that, on its first run, works until an interactive job interrupts it."""

    def __init__(self) -> None:
        self.runs: list[float] = []
        self.gave_way = threading.Event()

    def __call__(self, session: Session) -> None:
        self.runs.append(time.monotonic())
        if len(self.runs) == 1:
            wait(session.interrupted)
            self.gave_way.set()


def test_a_preload_that_gave_way_goes_on_once_the_worker_is_quiet(worker: ModelWorker) -> None:
    preload, delay = FakePreload(), 0.3
    worker.schedule_preload(preload, delay=delay)
    wait(lambda: preload.runs)
    ended: list[float] = []

    def interactive(session: Session) -> None:  # a context query, a chat, a clear: not a completion
        assert preload.gave_way.is_set()
        ended.append(time.monotonic())

    worker.submit(interactive, label="context").result(timeout=10)
    assert worker.preload_pending()  # it waits to go on (a completion now would aim it at itself)
    wait(lambda: len(preload.runs) == 2)
    assert preload.runs[1] >= ended[0] + delay  # after its quiet time, counted from the interruption's end
    time.sleep(delay + 0.2)
    assert len(preload.runs) == 2 and not worker.preload_pending()  # a run that did not give way is the last


def test_a_preload_that_gave_way_is_not_resumed_once_a_newer_one_replaced_it(worker: ModelWorker) -> None:
    old, new_runs = FakePreload(), []
    worker.schedule_preload(old, delay=0)
    wait(lambda: old.runs)
    assert worker.preload_pending()  # it runs: a completion now schedules one aimed at itself, then asks
    worker.schedule_preload(lambda s: new_runs.append(time.monotonic()), delay=0.1)
    worker.submit(lambda session: None, label="completion").result(timeout=10)
    assert old.gave_way.is_set()
    wait(lambda: new_runs)
    time.sleep(0.3)
    assert len(old.runs) == 1 and len(new_runs) == 1
