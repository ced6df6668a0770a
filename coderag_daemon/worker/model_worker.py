"""The one thread that owns the model and its cache.

llama.cpp contexts are not shared between threads, and a prefill takes seconds, so every model job
runs here, never on the LSP event loop. Interactive jobs (completion, chat) run first, in order; a
preload runs only when nothing interactive waits, and gives way within one batch when an interactive
job arrives (the engine polls `interrupted()` between batches). A preload that gave way runs again
once the worker is quiet (its delay after the last interactive job), whichever job interrupted it,
unless a newer preload replaced it or it was cancelled; what it decoded before stays in the cache.

From its start until a model is loaded (or fails to load, or `fail` says none can be), the worker
expects one: interactive jobs wait for it, whether they arrive before the request to load or after
(handlers that ask for the model and for a job may run in either order). Until that request comes
they wait at most `model_wait` seconds; a load, once started, is waited for to its end. A preload
waits for a model without a limit.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from ..engine import Context, ContextCache, EngineOptions, Model, UpdateStats
from ..engine.remote import RemoteContext, RemoteOptions, RemoteUnavailable, connect
from ..engine.remote.health import HealthWatch

log = logging.getLogger("coderag_daemon.worker")

T = TypeVar("T")
State = Literal["loading", "preloading", "ready", "busy", "error", "stopped"]


MODEL_WAIT = 30.0
"""Seconds an interactive job waits for a model to be asked for (the daemon asks at once) before it fails."""

MODEL_NICENESS = 5
"""How much lower than the rest of the daemon the model threads run (Linux nice levels)."""


def _below_the_event_loop() -> None:
    """Lower this thread's scheduling priority, and so that of the compute threads it starts (they
    inherit it). On two cores those threads would otherwise hold both, and an LSP message arriving
    during a prefill would wait for the scheduler to take one back; now the event loop wins at once.
    Only Linux schedules threads by their own nice value; elsewhere this would slow the whole process."""
    if sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + MODEL_NICENESS)
    except OSError as exc:
        log.info("model threads keep the daemon's priority: %s", exc)


class ModelUnavailable(RuntimeError):
    """No model is loaded (missing, broken, or still loading); the message says which and why."""


@dataclass
class Job(Generic[T]):
    fn: Callable[[Session], T]
    interactive: bool
    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)
    label: str = ""
    progress: Callable[[int, int], None] | None = None
    delay: float = 0.0
    """A preload's quiet time: after it is scheduled, and after the last interactive job once it gave way."""
    submitted: float = field(default_factory=time.monotonic)


@dataclass
class Session:
    """What a job sees: the engine, and the two ways it can be told to stop."""

    model: Model
    cache: Context
    job: Job
    others_waiting: Callable[[], bool]
    report: Callable[[UpdateStats], None]
    gave_way: bool = False
    """A preload stopped for an interactive job (the worker runs it again later)."""

    def interrupted(self) -> bool:
        """For prefill: this job was cancelled, or it is a preload and an interactive job waits."""
        if self.job.cancel.is_set():
            return True
        if not self.job.interactive and self.others_waiting():
            self.gave_way = True
            return True
        return False

    def cancelled(self) -> bool:
        """For generation: checked before every token."""
        return self.job.cancel.is_set()

    def update(self, segments: list[list[int]], seq: int = 0) -> UpdateStats:
        """Bring the cache's sequence `seq` to `segments`, yielding as `interrupted` says; the
        figures go to status."""
        stats = self.cache.update(segments, interrupt=self.interrupted, progress=self.job.progress, seq=seq)
        self.report(stats)
        return stats


def update_figures(stats: UpdateStats, prefill_ms: float | None = None) -> dict[str, Any]:
    """An update's figures as the protocol names them (camelCase). `prefill_ms` is the wall time a
    request waited for its prefill (tokenizing files included); by default the engine's own time."""
    ms = stats.decode_ms + stats.restore_ms + stats.checkpoint_ms if prefill_ms is None else prefill_ms
    return {
        "tokensReprocessed": stats.tokens_reprocessed,
        "tokensKept": stats.tokens_kept,
        "restoreKind": stats.restore_kind,
        "prefillMs": round(ms, 1),
    }


@dataclass
class Status:
    state: State
    model: str | None = None
    error: str | None = None
    tokens_cached: int = 0
    n_ctx: int = 0
    checkpoints: int = 0
    checkpoint_bytes: int = 0
    strategy: str | None = None
    last_update: UpdateStats | None = None
    update_seq: int = 0
    last_request: dict[str, Any] | None = None
    restored: dict[str, Any] | None = None
    """The saved cache loaded for this model, if any: tokens, ms, bytes, savedAt."""
    saved: dict[str, Any] | None = None
    """The last save of the cache: tokens, bytes, snapshotMs (on the worker), writeMs (on the writer)."""

    def as_dict(self) -> dict[str, Any]:
        """The `coderag/status` payload (camelCase, as the protocol document says)."""
        out: dict[str, Any] = {
            "state": self.state,
            "model": self.model,
            "error": self.error,
            "tokensCached": self.tokens_cached,
            "nCtx": self.n_ctx,
            "checkpoints": self.checkpoints,
            "checkpointBytes": self.checkpoint_bytes,
            "strategy": self.strategy,
        }
        if self.last_update is not None:
            out["last"] = {"seq": self.update_seq, **update_figures(self.last_update)}
        if self.last_request is not None:
            out["lastRequest"] = self.last_request
        if self.restored is not None:
            out["restored"] = self.restored
        if self.saved is not None:
            out["saved"] = self.saved
        return out


class ModelWorker:
    def __init__(
        self,
        on_status: Callable[[Status], None] = lambda s: None,
        on_loaded: Callable[[Model], None] = lambda m: None,
        model_wait: float = MODEL_WAIT,
        before_job: Callable[[Session], None] | None = None,
    ) -> None:
        self._cond = threading.Condition()
        self._interactive: collections.deque[Job] = collections.deque()
        self._preload: tuple[float | None, Job] | None = None
        """The pending preload and when it is due; None: its delay after the last interactive job."""
        self._expecting = True
        """A model is on its way: interactive jobs wait for it."""
        self._model_wait = model_wait
        self._preloading = False
        """A preload runs now."""
        self._quiet_since = time.monotonic()
        """When the last interactive job or load ended (worker thread only)."""
        self._model: Model | None = None
        self._cache: Context | None = None
        self._status = Status("loading")
        self._on_status = on_status
        self._on_loaded = on_loaded
        self._before_job = before_job
        """Runs on the worker before every job (a saved cache is loaded into a new one there)."""
        self._load_request: tuple[str, EngineOptions] | None = None
        self._stopping = False
        self._requests = 0
        self._thread = threading.Thread(target=self._run, name="coderag-model", daemon=True)
        self._thread.start()

    # --- called from any thread ---------------------------------------------------------------------

    def load(self, model_path: str, options: EngineOptions) -> None:
        """(Re)load a model on the worker thread; jobs queued meanwhile wait for it."""
        with self._cond:
            self._load_request = (model_path, options)
            self._expecting = True
            self._cond.notify()

    def fail(self, message: str) -> None:
        """No model can be loaded (e.g. none is installed): requests, waiting ones too, answer with `message`."""
        with self._cond:
            self._load_request = None
        self._set_status(state="error", error=message)
        self._no_longer_expecting()

    def submit(
        self,
        fn: Callable[[Session], T],
        *,
        label: str = "",
        cancel: threading.Event | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Future:
        job = Job(fn, interactive=True, label=label, progress=progress)
        if cancel is not None:
            job.cancel = cancel
        with self._cond:
            if self._stopping:
                raise ModelUnavailable("the daemon is shutting down")
            self._interactive.append(job)
            self._cond.notify()
        return job.future

    def schedule_preload(
        self,
        fn: Callable[[Session], Any],
        delay: float,
        label: str = "preload",
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Run `fn` after `delay` seconds of quiet; a newer preload replaces a pending one. If it gives
        way to an interactive job, it runs again `delay` seconds after the last one (see the module)."""
        job = Job(fn, interactive=False, label=label, progress=progress, delay=delay)
        with self._cond:
            if self._preload is not None:
                self._preload[1].cancel.set()
            self._preload = (time.monotonic() + delay, job)
            self._cond.notify()

    def preload_pending(self) -> bool:
        """A preload has work left: it waits for its quiet time, or runs (and may give way and go on).
        A preload scheduled now replaces it."""
        with self._cond:
            return self._preload is not None or self._preloading

    def status(self) -> Status:
        with self._cond:
            return self._status

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            pending = list(self._interactive)
            self._interactive.clear()
            self._cond.notify()
        for job in pending:
            job.cancel.set()
            job.future.set_exception(ModelUnavailable("the daemon is shutting down"))
        self._thread.join(timeout=30)

    # --- the worker thread ------------------------------------------------------------------------

    def _has_interactive(self) -> bool:
        return bool(self._interactive) or self._stopping or self._load_request is not None

    def _next(self) -> Job | tuple[str, EngineOptions] | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._load_request is not None:
                    request, self._load_request = self._load_request, None
                    return request
                now = time.monotonic()
                if self._interactive:
                    waited = now - self._interactive[0].submitted
                    if self._model is not None or not self._expecting or waited >= self._model_wait:
                        return self._interactive.popleft()
                    self._cond.wait(timeout=self._model_wait - waited)  # for the model on its way
                elif self._preload is not None and self._model is not None:
                    due, job = self._preload
                    if due is None:
                        due = self._quiet_since + job.delay
                    if due <= now:
                        self._preload = None
                        if not job.cancel.is_set():
                            return job
                        continue
                    self._cond.wait(timeout=due - now)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        _below_the_event_loop()
        while (item := self._next()) is not None:
            if isinstance(item, tuple):
                self._load(*item)
            else:
                self._run_job(item)
            if isinstance(item, tuple) or item.interactive:
                self._quiet_since = time.monotonic()
        self._close_model()
        self._set_status(state="stopped")

    def _load(self, model_path: str, options: EngineOptions) -> None:
        """Load the model and make its context: in-process, or, with `RemoteOptions`, its vocabulary
        alone and a connection to the engine server. A remote engine's health is then watched: the
        status says when the server is down and when it is back; a server that cannot be reached at
        load is waited for, and loaded from once it answers."""
        self._close_model()
        self._set_status(
            state="loading",
            model=model_path,
            error=None,
            tokens_cached=0,
            checkpoints=0,
            checkpoint_bytes=0,
            restored=None,
        )
        try:
            if isinstance(options, RemoteOptions):
                model = Model(model_path, vocab_only=True)
                cache: Context = connect(model, options)
            else:
                model = Model(model_path)
                cache = ContextCache(model, options)
            self._on_loaded(model)
        except Exception as exc:  # any failure leaves the daemon up, answering with this error
            log.error("cannot load model %s: %s", model_path, exc)
            self._set_status(state="error", error=str(exc))
            self._no_longer_expecting()
            if isinstance(exc, RemoteUnavailable) and isinstance(options, RemoteOptions):

                def load_when_back(error: str | None) -> None:
                    if error is None:
                        self.load(model_path, options)

                HealthWatch(options, on_health=load_when_back, done=self._replaced, down=str(exc))
            return
        self._model, self._cache = model, cache
        self._no_longer_expecting()
        self._set_status(state="ready", n_ctx=cache.n_ctx, strategy=cache.strategy)
        if isinstance(cache, RemoteContext):
            HealthWatch(
                cache.options, on_health=functools.partial(self._engine_health, cache), done=lambda: cache.closed
            )

    def _replaced(self) -> bool:
        """A model is in, another load was asked for, or the worker stops: a wait for a server ends."""
        with self._cond:
            return self._model is not None or self._load_request is not None or self._stopping

    def _engine_health(self, cache: RemoteContext, error: str | None) -> None:
        """From the health watch, every poll: while the engine server is down the status says so (a
        job that failed meanwhile set it back to ready); once it answers again, it is ready."""
        status = self.status()
        if error is not None and (status.state, status.error) != ("error", error):
            self._set_status(state="error", error=error)
        elif error is None and status.state == "error":
            cache.server_restarted()
            self._set_status(state="ready", error=None, tokens_cached=0)

    def _no_longer_expecting(self) -> None:
        """The model is in, or the error is in the status: jobs waiting for the model go on."""
        with self._cond:
            self._expecting = False
            self._cond.notify()

    def _close_model(self) -> None:
        if self._cache is not None:
            self._cache.close()
        if self._model is not None:
            self._model.close()
        self._model = self._cache = None

    def _run_job(self, job: Job) -> None:
        # Once running, the future cannot be cancelled under us (the job's cancel event stops it).
        if job.cancel.is_set() or not job.future.set_running_or_notify_cancel():
            if not job.future.done():
                job.future.set_exception(ModelUnavailable("cancelled before it started"))
            return
        if self._cache is None or self._model is None:
            job.future.set_exception(ModelUnavailable(f"no model available: {self._why_no_model()}"))
            return
        session = Session(self._model, self._cache, job, self._has_interactive, self._record_update)
        self._set_status(state="busy" if job.interactive else "preloading")
        with self._cond:
            self._preloading = not job.interactive
        try:
            if self._before_job is not None:
                self._before_job(session)
            result = job.fn(session)
        except BaseException as exc:  # handed to the waiting request, never kills the worker
            log.debug("job %s failed: %s", job.label, exc)
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
            if session.gave_way:
                self._resume_later(job)
        finally:
            with self._cond:
                self._preloading = False
            self._set_status(state="ready", **self._cache_figures())

    def _why_no_model(self) -> str:
        status = self.status()
        if status.state == "error" and status.error:
            return status.error
        return f"no model was asked to load within {self._model_wait:g} s"

    def _resume_later(self, preload: Job) -> None:
        """A preload gave way: it goes on once the worker is quiet, unless its target is gone (a
        newer preload replaced it, or it was cancelled). The rerun is a new job of the same work."""
        with self._cond:
            if self._preload is None and not preload.cancel.is_set() and not self._stopping:
                self._preload = (None, dataclasses.replace(preload, future=Future()))

    def _cache_figures(self) -> dict[str, Any]:
        cache = self._cache
        if cache is None:
            return {}
        return {
            "tokens_cached": cache.cells_used,
            "checkpoints": len(cache.checkpoints),
            "checkpoint_bytes": cache.checkpoints.nbytes,
        }

    def report_request(self, figures: dict[str, Any]) -> None:
        """A request finished: its figures (prefill, first token, generation) go out with the status,
        numbered so a client can tell a new request's figures from the previous ones."""
        with self._cond:
            self._requests += 1
            seq = self._requests
        self._set_status(last_request={"seq": seq, **figures})

    def report(self, **figures: dict[str, Any]) -> None:
        """A saved cache was loaded (`restored`) or written (`saved`): its figures go out with the
        status. From any thread."""
        self._set_status(**figures)

    def _record_update(self, stats: UpdateStats) -> None:
        self._set_status(last_update=stats, update_seq=self.status().update_seq + 1, **self._cache_figures())

    def _set_status(self, **changes: Any) -> None:
        with self._cond:
            self._status = Status(**{**self._status.__dict__, **changes})
            status = self._status
        self._on_status(status)
