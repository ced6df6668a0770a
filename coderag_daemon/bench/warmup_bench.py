"""The first minutes: completions asked while the daemon still decodes a newly opened project.

A project is opened (the sample project's six files, ~8K tokens on the default model, no saved
cache, a new workspace index), and at once the user types in one of them: lines of the file as
its author wrote them, each on a line of its own, with a completion asked after each one. Two runs
in one invocation: typing with completions, and the same typing without any. Prints each
completion's time, their p50/p95, and when the warm-up ended in both runs (every file but the one
being typed held by the cache), so that the cost of answering meanwhile shows as the delay it adds.
Goal: p95 at most 2.5 s while warming up, and the warm-up at most 10% later than without completions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types

from ..workspace.documents import path_to_uri
from . import quiet
from .daemon_bench import FILES
from .editor_session import SAMPLE, Session

TYPED = "tasktrack/storage.py"
QUIET_S = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="GGUF model (default: the embedded default model)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = the free cores")
    parser.add_argument("--lines", type=int, default=20, help="lines typed, one completion each (default: %(default)s)")
    parser.add_argument(
        "--pause", type=float, default=1.0, help="seconds between a line typed and the next (default: %(default)s)"
    )
    parser.add_argument(
        "--runs", default="completions,typing-only", help="comma-separated: completions, typing-only (default: both)"
    )


@dataclass
class RunResult:
    name: str
    warm_seconds: float | None = None
    """From opening the files until the cache held every file but the one typed in."""
    completions: list[tuple[float, dict]] = field(default_factory=list)


def _typed_lines(text: str, count: int) -> tuple[int, list[str]]:
    """Where typing starts (a line inside a function) and the `count` lines its author wrote there:
    the file is opened without them and they are typed back."""
    lines = text.split("\n")
    body = [i for i, ln in enumerate(lines) if ln.startswith("        ") and ln.strip()]
    start = body[len(body) // 3]
    return start, lines[start : start + count]


def _replace(s: Session, uri: str, line: int, end: int, text: str) -> None:
    """Replace the first `end` characters of `line` with `text`, as typing over them does."""
    s.versions[uri] += 1
    s.client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=s.versions[uri]),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line, 0), end=types.Position(line, end)), text=text
                )
            ],
        )
    )


async def _warm_up_end(s: Session, typed_uri: str, t0: float) -> float:
    """When the warm-up ended: the last status the daemon sent before it stayed idle for `QUIET_S`
    (a preload's end is its last status), checked then with `coderag/context`. The context is not
    asked for while the daemon works: each request would make the preload give way."""
    seen, changed = -1, time.perf_counter()
    while True:
        now = time.perf_counter()
        if len(s.status) != seen:
            seen, changed = len(s.status), now
        elif s.status and s.status[-1]["state"] == "ready" and now - changed > QUIET_S:
            break
        await asyncio.sleep(0.05)
    context = await s.client.protocol.send_request_async("coderag/context", {})
    others = [f for f in context["files"] if f["uri"] != typed_uri]
    if not all(f["cached"] for f in others):
        raise RuntimeError(f"the daemon went idle with files not cached: {[f['path'] for f in others]}")
    return changed - t0


async def _run_once(args: argparse.Namespace, name: str, work: Path) -> RunResult:
    root = work / name / SAMPLE.name
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("QUESTIONS.json", "__pycache__"))
    text = (root / TYPED).read_text()
    start, typed = _typed_lines(text, args.lines)
    lines = text.split("\n")
    (root / TYPED).write_text("\n".join([*lines[:start], "", *lines[start + len(typed) :]]))
    env = {**os.environ, "CODERAG_STATE_DIR": str(work / name / "states"), "CODERAG_INDEX_DIR": str(work / name / "ix")}
    command = [sys.executable, "-m", "coderag_daemon", "--log-level", "WARNING", "--threads", str(args.threads)]
    if args.model:
        command += ["--model", args.model]
    s = Session()
    result = RunResult(name)
    await s.client.start_io(*command, env=env)
    try:
        await s.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                workspace_folders=[types.WorkspaceFolder(uri=path_to_uri(root), name=root.name)],
            )
        )
        s.client.initialized(types.InitializedParams())
        ready = await s.wait_state("ready", "error")
        if ready["state"] == "error":
            raise RuntimeError(f"the daemon could not load a model: {ready['error']}")
        t0 = time.perf_counter()
        uris = {rel: s.open(root, rel) for rel in FILES}
        uri = uris[TYPED]
        shown = ""  # what the line being typed on holds: the indentation typed so far
        for k, line in enumerate(typed):
            following = typed[k + 1] if k + 1 < len(typed) else line
            indent = following[: len(following) - len(following.lstrip())]
            _replace(s, uri, start + k, len(shown), line + "\n" + indent)
            shown = indent
            await asyncio.sleep(args.pause)
            if name == "completions":
                text_shown, seconds, figures = await s.complete(uri, start + k + 1, len(indent))
                result.completions.append((seconds, figures))
                print(
                    f"  {time.perf_counter() - t0:6.1f}s  completion {k + 1:>2}: {seconds:5.2f} s, "
                    f"{figures.get('tokensReprocessed', 0):>4} tokens reprocessed, "
                    f"prefill {figures.get('prefillMs', 0) / 1000:4.2f} s, "
                    f"generation {figures.get('generationMs', 0) / 1000:4.2f} s, "
                    f"{figures.get('contextTokensLeftOut', 0):>5} left out, {text_shown[:40]!r}",
                    file=sys.stderr,
                    flush=True,
                )
        result.warm_seconds = await asyncio.wait_for(_warm_up_end(s, uri, t0), timeout=900)
        print(f"  {name}: warm after {result.warm_seconds:.1f} s", file=sys.stderr, flush=True)
        return result
    finally:
        await s.close()


def _p(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[int(q * 100) - 1]


def run(args: argparse.Namespace) -> int:
    machine = quiet.report()
    work = Path(tempfile.mkdtemp(prefix="coderag-warmup-"))
    try:
        results = []
        for name in (r.strip() for r in args.runs.split(",") if r.strip()):
            if name not in ("completions", "typing-only"):
                raise ValueError(f"unknown run {name!r} (completions, typing-only)")
            print(f"run: {name}", file=sys.stderr, flush=True)
            results.append(asyncio.run(_run_once(args, name, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(machine.line())
    print(f"{len(FILES)} files of the sample project opened, {args.lines} lines typed into {TYPED}")
    print("| run | warm after | completions | p50 | p95 | max | mean tokens reprocessed |")
    print("|---|---|---|---|---|---|---|")
    base = next((r.warm_seconds for r in results if r.name == "typing-only"), None)
    for r in results:
        times = [c[0] for c in r.completions]
        warm = f"{r.warm_seconds:.1f} s" if r.warm_seconds is not None else "-"
        if base and r.warm_seconds is not None and r.name != "typing-only":
            warm += f" ({r.warm_seconds / base:.2f}x)"
        if times:
            reprocessed = statistics.mean(c[1].get("tokensReprocessed", 0) for c in r.completions)
            print(
                f"| {r.name} | {warm} | {len(times)} | {_p(times, 0.5):.2f} s | {_p(times, 0.95):.2f} s "
                f"| {max(times):.2f} s | {reprocessed:.0f} |"
            )
        else:
            print(f"| {r.name} | {warm} | 0 | | | | |")
    return 0
