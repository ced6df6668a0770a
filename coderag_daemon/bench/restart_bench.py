"""Cold start against warm restart, over LSP as an editor drives the daemon: open a project's files,
wait until every file is cached, ask for a completion, shut down (the cache is saved); start again,
open the same files (in the opposite order), wait until every file is cached, ask for the same
completion. Prints the times side by side, how fast the saved state loads against decoding the same
tokens, and what a save costs.

The daemon runs with its own state and index directories in a temporary folder, so the first start
is cold whatever was saved before, and nothing is left in the user's cache."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

from . import quiet
from .editor_session import SAMPLE, Session

LAST_FILE = "tasktrack/auth.py"
"""Opened last the first time (the completion's file) when the project is the sample project."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="GGUF model (default: the embedded default model)")
    parser.add_argument("--project", type=Path, default=SAMPLE, help="project whose .py files are opened")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = the free cores")
    parser.add_argument("--line", type=int, default=40, help="line of the last file the completion is asked at")


@dataclass
class Start:
    """One start of the daemon, as the editor sees it."""

    model_ready_s: float = 0.0
    warm_s: float = 0.0
    """From the start of the process until every file is cached."""
    decode_ms: float = 0.0
    """Engine time of the background updates until then."""
    decoded: int = 0
    completion: str = ""
    completion_s: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    restored: dict[str, Any] | None = None
    saved: dict[str, Any] | None = None
    shutdown_s: float = 0.0
    files_tokens: int = 0
    all_cached: bool = False


SETTLED_S = 2.0
"""The worker counts as done with the files once its status stayed "ready" this long (the time
reported is when it got there)."""


async def settled(s: Session, t0: float) -> float:
    """Seconds from `t0` until the worker last changed what it holds and then stayed ready."""
    key, since = None, time.perf_counter()
    while True:
        now = time.perf_counter()
        last = s.status[-1] if s.status else {}
        if (state := (last.get("state"), last.get("tokensCached"))) != key:
            key, since = state, now
        elif key[0] == "ready" and now - since >= SETTLED_S:
            return since - t0
        await asyncio.sleep(0.02)


async def _start(args: argparse.Namespace, root: Path, env: dict[str, str], files: list[str]) -> Start:
    s = Session()
    command = [sys.executable, "-m", "coderag_daemon", "--log-level", "WARNING", "--threads", str(args.threads)]
    if args.model:
        command += ["--model", args.model]
    result = Start()
    t0 = time.perf_counter()
    await s.client.start_io(*command, env=env)
    await s.client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
        )
    )
    s.client.initialized(types.InitializedParams())
    ready = await s.wait_state("ready", "error")
    if ready["state"] == "error":
        raise RuntimeError(f"the daemon could not load a model: {ready['error']}")
    result.model_ready_s = time.perf_counter() - t0
    uris = [s.open(root, rel) for rel in files]
    result.warm_s = await settled(s, t0)
    context = await s.client.protocol.send_request_async("coderag/context", {})
    result.files_tokens = sum(f["tokens"] for f in context["files"])
    result.all_cached = all(f["cached"] for f in context["files"])
    updates = {st["last"]["seq"]: st["last"] for st in s.status if st.get("last")}
    result.decode_ms = sum(u["prefillMs"] for u in updates.values() if u["restoreKind"] != "disk")
    result.decoded = sum(u["tokensReprocessed"] for u in updates.values())
    result.restored = next((st["restored"] for st in s.status if st.get("restored")), None)
    last = uris[files.index(LAST_FILE)] if LAST_FILE in files else uris[-1]
    t1 = time.perf_counter()
    result.completion, _, result.figures = await s.complete(last, args.line, 0)
    result.completion_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    await s.close()
    result.shutdown_s = time.perf_counter() - t2
    result.saved = next((st["saved"] for st in reversed(s.status) if st.get("saved")), None)
    return result


async def _run(args: argparse.Namespace) -> int:
    quiet.report()
    work = Path(tempfile.mkdtemp(prefix="coderag-restart-"))
    try:
        root = work / args.project.name
        shutil.copytree(args.project, root, ignore=shutil.ignore_patterns("QUESTIONS.json", "__pycache__"))
        env = {**os.environ, "CODERAG_STATE_DIR": str(work / "states"), "CODERAG_INDEX_DIR": str(work / "index")}
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*.py"))
        if LAST_FILE in files:
            files.remove(LAST_FILE)
            files.append(LAST_FILE)
        print(f"Project: {args.project} ({len(files)} files)")
        cold = await _start(args, root, env, files)
        print(f"cold start done: {cold.warm_s:.1f} s until {cold.files_tokens} tokens of files were cached")
        warm = await _start(args, root, env, list(reversed(files)))
        _report(cold, warm)
        return 0 if warm.completion == cold.completion and warm.all_cached else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _report(cold: Start, warm: Start) -> None:
    restored = warm.restored or {}
    rate = cold.decode_ms / cold.decoded if cold.decoded else 0.0  # ms per decoded token, cold
    decode_same = rate * restored.get("tokens", 0)
    load_ms = restored.get("ms", 0.0)
    left_out = warm.figures.get("contextTokensLeftOut", 0)
    print()
    print(f"| {cold.files_tokens} tokens of files | cold start | restart | restart / cold |")
    print("|---|---|---|---|")
    print(f"| model loaded | {cold.model_ready_s:.1f} s | {warm.model_ready_s:.1f} s | |")
    print(f"| every file cached | {cold.warm_s:.1f} s | {warm.warm_s:.1f} s | {warm.warm_s / cold.warm_s:.2f}x |")
    print(f"| tokens decoded until then | {cold.decoded} | {warm.decoded} | |")
    print(f"| every file cached then | {_yes(cold.all_cached)} | {_yes(warm.all_cached)} | |")
    for label, start in (("cold", cold), ("restart", warm)):
        f = start.figures
        print(
            f"| first completion, {label} | {start.completion_s:.2f} s: {f.get('tokensReprocessed', '?')} of "
            f"{f.get('tokensInContext', '?')} tokens reprocessed, {f.get('contextTokensLeftOut', 0)} left out | | |"
        )
    print()
    print(
        f"Saved state loaded: {restored.get('tokens', 0)} tokens, {restored.get('bytes', 0) / 2**20:.1f} MiB in "
        f"{load_ms:.0f} ms; decoding them took {decode_same / 1000:.1f} s cold "
        f"({decode_same / load_ms:.0f}x)"
        if load_ms
        else "Saved state loaded: none"
    )
    saved = cold.saved or {}
    print(
        f"Last save: {saved.get('bytes', 0) / 2**20:.1f} MiB; copied on the model's thread in "
        f"{saved.get('snapshotMs', 0):.0f} ms (the most a request arriving then waits), written in "
        f"{saved.get('writeMs', 0):.0f} ms on the writer's thread; shutdown took {cold.shutdown_s:.1f} s"
    )
    same = "the same" if warm.completion == cold.completion else f"NOT the same: {warm.completion!r}"
    print(
        f"First completion after the restart: {same} as before it ({cold.completion[:60]!r}); "
        f"context left out: {left_out} tokens"
    )


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
