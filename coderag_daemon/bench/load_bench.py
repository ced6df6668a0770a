"""The daemon on a busy machine: the replay of `bench compare`, run on a quiet machine and then with
a busy loop holding one core, in one invocation, side by side.

A laptop always has an editor, a browser, a build or a test run beside the daemon. The busy loop
(a Python process spinning on the last core, started before the run and stopped after it) stands
for them. The goal: a busy core slows the daemon in proportion (completion p50 at most 1.5 times,
p95 at most 2 times the quiet figures), not by ten times. `--fixed-threads N` adds a loaded run
with the thread count held at N, as it was before the engine followed the free cores.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..engine.threads import usable_cores
from . import quiet
from .compare_bench import _model_paths
from .replay import ReplaySource, replay_session
from .sides import DaemonSide, RunOptions, SideResult, replay, tokenizer_layout

HOG = "while True:\n    pass\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="gemma3-270m",
        help="'default', 'gemma3-270m' or a GGUF path (default: %(default)s)",
    )
    parser.add_argument("--replay-tokens", type=int, default=5000, help="tokens of open files (default: %(default)s)")
    parser.add_argument("--replay-lines", type=int, default=40, help="most lines typed (default: %(default)s)")
    parser.add_argument("--chats", type=int, default=2, help="questions asked along the way (default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=0, help="the daemon's threads, 0 = the free cores (default: %(default)s)"
    )
    parser.add_argument(
        "--fixed-threads",
        type=int,
        default=0,
        help="also run loaded with the threads held at this count (0: no such run)",
    )
    parser.add_argument(
        "--runs",
        default="quiet,loaded",
        help="comma-separated, in order: quiet, loaded (default: %(default)s)",
    )


@contextmanager
def busy_core() -> Iterator[int | None]:
    """A process spinning on the last usable core for as long as the block runs; yields its core."""
    try:
        core: int | None = max(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        core = None
    hog = subprocess.Popen(
        [sys.executable, "-c", (f"import os\nos.sched_setaffinity(0, {{{core}}})\n" if core is not None else "") + HOG]
    )
    try:
        yield core
    finally:
        hog.kill()
        hog.wait()


@dataclass
class Run:
    name: str
    threads: int
    loaded: bool
    result: SideResult | None = None


def _p(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[int(q * 100) - 1]


def run(args: argparse.Namespace) -> int:
    machine = quiet.report()
    [(_, path)] = _model_paths(args.model)
    tokenizer, layout = tokenizer_layout(path)
    try:
        workload = replay_session(
            ReplaySource(), lambda t: len(tokenizer.tokenize(t)), args.replay_tokens, args.replay_lines, args.chats
        )
        file_tokens = sum(len(layout.file_segment(rel, text)) for rel, text in workload.files.items())
    finally:
        tokenizer.close()
    print(f"{path.name}: {workload.description}; {file_tokens} tokens of files; {usable_cores()} cores", flush=True)
    runs: list[Run] = []
    for name in (r.strip() for r in args.runs.split(",") if r.strip()):
        if name not in ("quiet", "loaded"):
            raise ValueError(f"unknown run {name!r} (quiet, loaded)")
        runs.append(Run(name, args.threads, name == "loaded"))
    if args.fixed_threads > 0:
        runs.append(Run(f"loaded, {args.fixed_threads} threads fixed", args.fixed_threads, True))
    for r in runs:
        options = RunOptions(
            n_ctx=file_tokens + 3072,
            context_tokens=file_tokens + 1024,
            threads=r.threads,
            completion_tokens=16,
            chat_tokens=48,
        )
        print(f"run: {r.name} (threads {r.threads or 'free cores'})", file=sys.stderr, flush=True)
        if r.loaded:
            with busy_core() as core:
                print(f"  a busy loop holds core {core}", file=sys.stderr, flush=True)
                r.result = asyncio.run(replay(DaemonSide(path, options), workload, r.name))
        else:
            r.result = asyncio.run(replay(DaemonSide(path, options), workload, r.name))
    _print(runs, machine)
    return 0


def _print(runs: list[Run], machine: quiet.Quietness) -> None:
    print()
    print(machine.line())
    print("| run | completions | p50 | p95 | max | chats, total | all requests, total | vs quiet (total, p50, p95) |")
    print("|---|---|---|---|---|---|---|---|")
    base = next((r for r in runs if r.name == "quiet" and r.result), None)
    for r in runs:
        assert r.result is not None
        done = [q.seconds for q in r.result.requests if q.kind == "complete"]
        chats = [q.seconds for q in r.result.requests if q.kind == "chat"]
        total = sum(q.seconds for q in r.result.requests)
        ratio = ""
        if base is not None and base is not r and base.result is not None:
            b = [q.seconds for q in base.result.requests if q.kind == "complete"]
            b_total = sum(q.seconds for q in base.result.requests)
            ratio = f"{total / b_total:.2f}x, {_p(done, 0.5) / _p(b, 0.5):.2f}x, {_p(done, 0.95) / _p(b, 0.95):.2f}x"
        print(
            f"| {r.name} | {len(done)} | {_p(done, 0.5):.2f} s | {_p(done, 0.95):.2f} s | {max(done, default=0):.2f} s"
            f" | {sum(chats):.1f} s | {total:.1f} s | {ratio} |"
        )
