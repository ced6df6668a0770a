"""Side-by-side benchmark: coderag-daemon against llama-server and llama-cpp-python, same workload,
same model, same machine, one run.

Sides: (a) coderag-daemon over LSP as an editor drives it; (b) llama-server driven as llama.vscode
drives it, once with its default settings and once with its best settings for the model; (c)
llama-cpp-python's `Llama` with its own prefix reuse; on request (`--sides ...,ours-remote`), (d)
coderag-daemon whose engine is llama-server with (b)'s best build and flags. Workloads: `mid-edit` (a line typed in the
middle file of ~8K tokens of real source, then one near the end) and `replay` (a real package's
change between two releases typed line by line, a completion after each line, a few questions).
Per side: tokens reprocessed, latency p50/p95, background work, peak RSS, checkpoint memory; and the
ratios to the daemon measured in the same run. The sides run one after another, never together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .. import default_model
from . import quiet
from .llama_server import DEFAULT_SETTINGS, ServerBuild, best_settings
from .plots import plot_session
from .replay import ReplaySource, replay_session
from .sides import (
    DaemonSide,
    LlamaCppPythonSide,
    RemoteDaemonSide,
    RunOptions,
    ServerSide,
    Side,
    SideResult,
    replay,
    tokenizer_layout,
)
from .workload import Workload, mid_edit

SIDES = ("ours", "server-default", "server-best", "llama-cpp-python", "ours-remote")
DEFAULT_SIDES = SIDES[:4]
"""`ours-remote`, coderag-daemon over llama-server (the best settings' build and flags), on request."""
FULL_MODELS = "default,gemma3-270m,tiny-recurrent"
TINY_MODELS = "tiny-dense,tiny-swa,tiny-recurrent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default=None,
        help="comma-separated: 'default', 'gemma3-270m', 'tiny-KIND' (dense, swa, recurrent, hybrid) "
        f"or GGUF paths (default: {FULL_MODELS}; with --tiny: {TINY_MODELS})",
    )
    parser.add_argument(
        "--workloads", default="mid-edit,replay", help="comma-separated: mid-edit, replay (default: %(default)s)"
    )
    parser.add_argument(
        "--sides",
        default=",".join(DEFAULT_SIDES),
        help=f"comma-separated subset of {', '.join(SIDES)} (default: %(default)s)",
    )
    parser.add_argument(
        "--tiny", action="store_true", help=f"tiny random-weight models ({TINY_MODELS}) and --quick sizes: a smoke run"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller workloads: 4K-token mid edit, 12 typed lines, one question"
    )
    parser.add_argument(
        "--mid-tokens", type=int, default=8192, help="mid-edit context size in tokens (default: %(default)s)"
    )
    parser.add_argument(
        "--replay-tokens", type=int, default=5000, help="replay: tokens of open files (default: %(default)s)"
    )
    parser.add_argument("--replay-lines", type=int, default=40, help="replay: most lines typed (default: %(default)s)")
    parser.add_argument(
        "--chats", type=int, default=2, help="replay: questions asked along the way (default: %(default)s)"
    )
    parser.add_argument(
        "--completion-tokens", type=int, default=16, help="longest completion, every side (default: %(default)s)"
    )
    parser.add_argument(
        "--chat-tokens", type=int, default=48, help="longest chat answer, every side (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per side, 0 = all cores")
    parser.add_argument("--build-server", action="store_true", help="build llama-server (once) and exit")
    parser.add_argument("--json", type=Path, default=None, help="also write every request's figures as JSON")
    parser.add_argument("--plots", type=Path, default=None, help="write PNG plots into this folder")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _model_paths(spec: str) -> list[tuple[str, Path]]:
    from fixtures.tiny_models import tiny_model_path

    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        if name.startswith("tiny-"):
            out.append((name, tiny_model_path(name.removeprefix("tiny-"))))
        elif name == "default" or name in default_model.PACKAGED_MODELS:
            packaged = default_model.DEFAULT_MODEL if name == "default" else default_model.PACKAGED_MODELS[name]
            if not default_model.is_installed(packaged):
                raise FileNotFoundError(f"{packaged.name} is not installed: {packaged.install_hint}")
            out.append((packaged.name, default_model.model_path(packaged)))
        else:
            out.append((Path(name).name, Path(name)))
    return out


def _workload(name: str, count: Callable[[str], int], args: argparse.Namespace) -> Workload:
    if name == "mid-edit":
        return mid_edit(count, args.mid_tokens)
    if name == "replay":
        return replay_session(ReplaySource(), count, args.replay_tokens, args.replay_lines, args.chats)
    raise ValueError(f"unknown workload {name!r} (mid-edit, replay)")


async def _compare(
    label: str, path: Path, workload_name: str, args: argparse.Namespace, server: Path, logs: Path
) -> list[SideResult]:
    tokenizer, layout = tokenizer_layout(path)  # the fixed-order sides tokenize with it: open till the end
    try:
        workload = _workload(workload_name, lambda t: len(tokenizer.tokenize(t)), args)
        file_tokens = sum(len(layout.file_segment(rel, text)) for rel, text in workload.files.items())
        options = RunOptions(
            n_ctx=file_tokens + 3072,
            context_tokens=file_tokens + 1024,
            threads=args.threads,
            completion_tokens=args.completion_tokens,
            chat_tokens=args.chat_tokens,
        )
        _log(f"{label} ({tokenizer.kind}), {workload.name}: {workload.description}; {file_tokens} tokens of files")
        wanted = [s.strip() for s in args.sides.split(",")]
        sides: list[Side] = []
        if "ours" in wanted:
            sides.append(DaemonSide(path, options))
        for settings, key in ((DEFAULT_SETTINGS, "server-default"), (best_settings(tokenizer.kind), "server-best")):
            if key in wanted:
                sides.append(
                    ServerSide(server, path, layout, options, settings, logs / f"{label}-{workload.name}-{key}.log")
                )
        if "llama-cpp-python" in wanted:
            sides.append(LlamaCppPythonSide(path, layout, options))
        if "ours-remote" in wanted:
            log = logs / f"{label}-{workload.name}-ours-remote.log"
            sides.append(RemoteDaemonSide(server, path, options, best_settings(tokenizer.kind), log))
        check = "mid edit" if workload.name == "mid-edit" else None
        return [await replay(side, workload, label, check) for side in sides]
    finally:
        tokenizer.close()


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def _s(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def _ratio(ours: float, theirs: float) -> str:
    """ours / theirs, also written as 1/n when below 1 (n times fewer, or faster)."""
    if not theirs or math.isnan(ours) or math.isnan(theirs):
        return "-"
    q = ours / theirs
    return f"{q:.2f} = 1/{1 / q:.1f}" if 0 < q < 1 else f"{q:.2f}"


def print_tables(results: list[SideResult]) -> None:
    print(
        "\n| model | workload | side | requests | tokens reprocessed (total) | per request (mean / max) | "
        "completion p50 s | p95 s | tokens generated (mean) | chat mean s | background s (tokens) | peak RSS MiB | "
        "checkpoints MiB | exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        toks = [q.tokens for q in r.requests]
        gen = [q.generated for q in r.requests if q.kind == "complete"]
        chats = [q.seconds for q in r.requests if q.kind == "chat"]
        exact = "-" if r.exact is None else ("yes" if r.exact else "NO")
        print(
            f"| {r.model} | {r.workload} | {r.side} | {len(r.requests)} | {r.total_tokens} | "
            f"{sum(toks) / max(len(toks), 1):.0f} / {max(toks, default=0)} | "
            f"{_s(r.latency(0.5))} | {_s(r.latency(0.95))} | "
            f"{sum(gen) / max(len(gen), 1):.1f} | {_s(sum(chats) / len(chats)) if chats else '-'} | "
            f"{r.background_seconds:.2f} ({r.background_tokens}) | {_mib(r.peak_rss)} | "
            f"{_mib(r.checkpoint_bytes)} | {exact} |"
        )
    print("\nRatios ours / theirs, same run (below 1: coderag-daemon reprocesses fewer tokens or answers sooner):\n")
    print("| model | workload | theirs | tokens reprocessed | completion p50 | completion p95 |")
    print("|---|---|---|---|---|---|")
    for ours in (r for r in results if r.side == DaemonSide.name):
        for r in results:
            if r.model == ours.model and r.workload == ours.workload and r is not ours:
                print(
                    f"| {r.model} | {r.workload} | {r.side} | {_ratio(ours.total_tokens, r.total_tokens)} | "
                    f"{_ratio(ours.latency(0.5), r.latency(0.5))} | {_ratio(ours.latency(0.95), r.latency(0.95))} |"
                )
    mids = [r for r in results if r.workload == "mid-edit"]
    if mids:
        print("\nmid-edit, each request (tokens reprocessed / seconds):\n")
        names = list(dict.fromkeys(r.side for r in mids))
        print("| model | request | " + " | ".join(names) + " |")
        print("|---|---|" + "---|" * len(names))
        for model in dict.fromkeys(r.model for r in mids):
            rows = {r.side: r for r in mids if r.model == model}
            for i, q in enumerate(next(iter(rows.values())).requests):
                cells = [
                    f"{rows[n].requests[i].tokens} / {rows[n].requests[i].seconds:.2f}" if n in rows else "-"
                    for n in names
                ]
                print(f"| {model} | {q.label} | " + " | ".join(cells) + " |")


def run(args: argparse.Namespace) -> int:
    quiet.report()
    args.models = args.models or (TINY_MODELS if args.tiny else FULL_MODELS)
    args.quick = args.quick or args.tiny
    if args.quick:
        args.mid_tokens, args.replay_tokens = min(args.mid_tokens, 4096), min(args.replay_tokens, 4000)
        args.replay_lines, args.chats = min(args.replay_lines, 12), min(args.chats, 1)
    args.threads = args.threads or os.cpu_count() or 1
    build = ServerBuild()
    server = build.binary
    if args.build_server or "server-" in args.sides or "ours-remote" in args.sides:
        server = build.ensure(_log)
        _log(
            f"llama-server: {server} (llama.cpp {build.info['llama_cpp_commit']}, "
            f"from llama-cpp-python {build.version})"
        )
    if args.build_server:
        return 0
    logs = Path(tempfile.mkdtemp(prefix="coderag-compare-logs-"))
    results: list[SideResult] = []
    for label, path in _model_paths(args.models):
        for workload in (w.strip() for w in args.workloads.split(",") if w.strip()):
            session = asyncio.run(_compare(label, path, workload, args, server, logs))
            results += session
            if args.plots is not None:
                plot_session(session, args.plots / f"{workload}-{label}.png")
    print_tables(results)
    _log(f"llama-server logs: {logs}")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0
