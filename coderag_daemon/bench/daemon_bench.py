"""Daemon benchmark: an editing session over LSP, as an editor drives it.

On a context of real files (~8K tokens), twenty edits concentrated on two files in the middle of
the context, in bursts as a programmer works: a burst starts somewhere in one file, with the
completion asked after the preload has run, then types the next lines one by one, each completed at
once; the next burst goes to the other file. Prints the time to first token in both cases, the time
of whole single-line completions, how long the event loop takes to answer while a prefill runs, and
the tokens reprocessed over the session (requests and preloads) against what a prefix-reusing
server reprocesses for the same requests when a client sends the same files in a fixed order ahead
of each one (computed with the same tokenizer and layout): all of them, and, as llama.vscode does,
all but the file being completed, which only its cursor window represents.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types

from .. import default_model
from ..engine.cache import common_prefix
from ..prompting.completion import WindowStarts
from ..workspace.documents import path_to_uri
from . import quiet
from .editor_session import SAMPLE, Session
from .sides import tokenizer_layout

FILES = [
    "tasktrack/models.py",
    "tasktrack/config.py",
    "tasktrack/storage.py",
    "tasktrack/auth.py",
    "tasktrack/notifications.py",
    "tasktrack/scheduler.py",
]
HOT = ["tasktrack/storage.py", "tasktrack/auth.py"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="GGUF model (default: the embedded default model)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = the free cores")
    parser.add_argument(
        "--bursts",
        type=int,
        default=4,
        help="bursts of edits, alternating between the two files (default: %(default)s)",
    )
    parser.add_argument("--burst-lines", type=int, default=5, help="lines typed per burst (default: %(default)s)")


class Doc:
    """The benchmark's own copy of a file, edited as the editor edits it."""

    def __init__(self, path: Path, rel: str) -> None:
        self.rel, self.uri, self.text = rel, path_to_uri(path), path.read_text()

    def insert(self, line: int, text: str) -> None:
        lines = self.text.split("\n")
        lines.insert(line, text)
        self.text = "\n".join(lines)

    def offset(self, line: int, character: int) -> int:
        return sum(len(ln) + 1 for ln in self.text.split("\n")[:line]) + character


def _quiet_line(doc: Doc, k: int) -> int:
    """A line inside a function body, spread over the file, to edit in the k-th round."""
    lines = doc.text.split("\n")
    body = [
        i
        for i, ln in enumerate(lines)
        if ln.startswith("        ") and ln.strip() and not ln.strip().startswith(('"', "'"))
    ]
    return body[(k * 7919) % len(body)]


async def _probe_event_loop(s: Session, scratch: str, until: asyncio.Future) -> list[float]:
    """didChange then a request answered on the event loop, repeatedly, while the model works."""
    rtts = []
    while not until.done():
        s.type_text(scratch, 0, 0, "x")
        t0 = time.perf_counter()
        await s.client.protocol.send_request_async("coderag/documentText", {"uri": scratch})
        rtts.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.05)
    return rtts


class FixedOrderClient:
    """What a prefix-reusing server reprocesses when a client sends files in a fixed order (the order
    they were opened) ahead of each completion; `skip_current` leaves the file being completed out,
    as llama.vscode does, since its cursor window is in the request anyway."""

    def __init__(self, layout: Any, repo: str, docs: dict[str, Doc], skip_current: bool) -> None:
        self.layout, self.repo, self.docs, self.skip_current = layout, repo, docs, skip_current
        self.cached: list[int] = []
        self.reprocessed = 0
        self.windows = WindowStarts()  # the same cursor windows as the daemon's

    def request(self, current: Doc, line: int, character: int) -> None:
        window = self.windows.window(current.rel, current.text, current.offset(line, character))
        prompt = list(self.layout.head(self.repo))
        for rel in FILES:
            if not (self.skip_current and rel == current.rel):
                prompt += self.layout.file_segment(rel, self.docs[rel].text)
        prompt += self.layout.completion_tail(current.rel, window.prefix, window.suffix)
        self.reprocessed += len(prompt) - min(common_prefix(self.cached, prompt), len(prompt) - 1)
        self.cached = prompt


def _reprocessed_since(status: list[dict[str, Any]], seq: int) -> tuple[int, int]:
    """Tokens reprocessed by the model calls after `seq` (each counted once), and the newest seq."""
    calls = {
        st["last"]["seq"]: st["last"]["tokensReprocessed"] for st in status if "last" in st and st["last"]["seq"] > seq
    }
    return sum(calls.values()), max(calls, default=seq)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(args: argparse.Namespace) -> int:
    model_path = args.model or str(default_model.resolve_default())
    work = Path(tempfile.mkdtemp(prefix="coderag-bench-"))
    root = work / "tasktrack"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("QUESTIONS.json", "__pycache__"))
    tokenizer, layout = tokenizer_layout(Path(model_path))  # the peers' request order
    s = Session()
    # room for all six files and their growth: no file leaves the context during the session (the
    # fixed-order client keeps them all too); evicting the first file would reprocess everything.
    # Every completion waits for the whole context, as the fixed-order client's prompts hold it.
    await s.client.start_io(
        sys.executable,
        "-m",
        "coderag_daemon",
        "--model",
        model_path,
        "--threads",
        str(args.threads),
        "--context-tokens",
        "12288",
        "--n-ctx",
        "16384",
        "--log-level",
        "WARNING",
        "--completion-wait-tokens",
        "131072",
    )
    try:
        await s.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                workspace_folders=[types.WorkspaceFolder(uri=path_to_uri(root), name="tasktrack")],
            )
        )
        s.client.initialized(types.InitializedParams())
        if (await s.wait_state("ready", "error"))["state"] == "error":
            print(f"model failed: {s.status[-1]['error']}")
            return 1
        docs = {rel: Doc(root / rel, rel) for rel in FILES}
        for rel in FILES:
            s.open(root, rel)
        scratch = "untitled:scratch"  # not a file: it never enters the context
        s.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=scratch, language_id="plaintext", version=1, text="")
            )
        )
        s.versions[scratch] = 1

        # 1. cold prefill of the whole context, with the event loop probed meanwhile
        last = docs[FILES[-1]]
        cold = asyncio.ensure_future(s.complete(last.uri, 3, 0))
        rtts = await _probe_event_loop(s, scratch, cold)
        _, cold_seconds, cold_figures = await cold
        print(
            f"context: {cold_figures['tokensInContext']} tokens in {len(FILES)} files; "
            f"cold prefill {cold_seconds:.1f}s; "
            f"{len(rtts)} didChange+request round trips during it: p50 {_pct(rtts, 0.5):.1f} ms, "
            f"p99 {_pct(rtts, 0.99):.1f} ms, max {max(rtts):.1f} ms",
            flush=True,
        )

        # 2. the editing session
        start_seq = seen = max((st["last"]["seq"] for st in s.status if "last" in st), default=0)
        fixed = {skip: FixedOrderClient(layout, "tasktrack", docs, skip) for skip in (False, True)}
        for client in fixed.values():
            client.request(last, 3, 0)
            client.reprocessed = 0
        after_preload: list[tuple[float, float]] = []
        immediate: list[tuple[float, float]] = []
        single_line: list[float] = []
        for k in range(args.bursts):
            doc = docs[HOT[k % 2]]
            line = _quiet_line(doc, k)
            for i in range(args.burst_lines):
                at_once = i > 0  # the burst goes on typing the next line, without waiting
                line += at_once
                current = doc.text.split("\n")[line]
                indent = " " * (len(current) - len(current.lstrip()))
                new_line = f'{indent}log.debug("step {k}.{i}")'
                doc.insert(line, new_line)
                s.type_text(doc.uri, line, 0, new_line + "\n")
                if not at_once:
                    await s.settle()
                text, seconds, figures = await s.complete(doc.uri, line + 1, 0)
                before, seen = _reprocessed_since(s.status, seen)
                before -= figures.get("tokensReprocessed", 0)
                ttft = figures.get("timeToFirstTokenMs", 0.0) / 1000
                (immediate if at_once else after_preload).append((ttft, seconds))
                if text and "\n" not in text.strip():
                    single_line.append(seconds)
                server_before = fixed[False].reprocessed
                for client in fixed.values():
                    client.request(doc, line + 1, 0)
                print(
                    f"  edit {k * args.burst_lines + i + 1:>2} in {doc.rel:<20} "
                    f"{'at once      ' if at_once else 'after preload'} "
                    f"TTFT {ttft:.2f}s, whole {seconds:.2f}s, "
                    f"{figures.get('tokensReprocessed', '-')} tokens reprocessed"
                    f"{f' (+{before} by the preload)' if before else ''}; "
                    f"fixed order: {fixed[False].reprocessed - server_before}",
                    flush=True,
                )
        await s.settle()
        ours, _ = _reprocessed_since(s.status, start_seq)
        in_context = [f["path"] for f in (await s.client.protocol.send_request_async("coderag/context", {}))["files"]]
        if len(in_context) != len(FILES):
            print(
                f"warning: files left the context during the session, the comparison is not like for like: {in_context}"
            )
        print()
        print("| figure | value |")
        print("|---|---|")
        print(
            f"| time to first token after an edit, preload done (median of {len(after_preload)}) | "
            f"{statistics.median(t for t, _ in after_preload):.2f} s |"
        )
        print(
            f"| time to first token, next line typed at once, no preload (median of {len(immediate)}) | "
            f"{statistics.median(t for t, _ in immediate):.2f} s |"
        )
        if single_line:
            print(
                f"| whole single-line completion (median of {len(single_line)}) | "
                f"{statistics.median(single_line):.2f} s |"
            )
        print(f"| didChange + request round trip during a prefill, p99 | {_pct(rtts, 0.99):.1f} ms |")
        print(f"| tokens reprocessed over the session, this daemon (requests and preloads) | {ours} |")
        for skip, client in fixed.items():
            which = "all but the file being completed" if skip else "all files"
            print(
                f"| same requests, {which} in a fixed order, prefix-reusing server | {client.reprocessed} "
                f"({client.reprocessed / max(ours, 1):.1f}x ours) |"
            )
        return 0
    finally:
        await s.close()
        tokenizer.close()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    quiet.report()
    return asyncio.run(_run(args))
