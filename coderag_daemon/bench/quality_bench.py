"""Completion quality: are the suggestions the ones a person wants?

Real authors' typing is replayed (the changes between two PyPI releases of a few pure-Python packages,
see quality_cases.py) and at each case a completion is asked and compared with what the author typed
from there: its first line exactly, its edit similarity, and the characters a person could accept
(the longest prefix of the suggestion that is what was typed). Partial-word cases also count whether
the suggestion continues the word being typed. Latency is measured too.

Sides, one after another, same model and llama.cpp: the daemon over LSP with the package's files open
(`ours`); llama-server's `/infill` shaped as llama.vscode sends it (`infill`); the daemon with only the
current file (`ours-file`: a file context too small for any other file), with the least recently
used files leaving a small budget first (`ours-lru`), and that with the definitions of the names near
the cursor in its requests (`ours-defs`). Cases and their order are fixed by `--seed`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types

from . import quiet
from .compare_bench import _model_paths
from .llama_server import DEFAULT_SETTINGS, LLAMA_VSCODE_SETTINGS, ServerBuild
from .quality_cases import CATEGORIES, PACKAGES, PARTIAL_CATEGORIES, Case, quality_workloads
from .quality_scoring import accepted_chars, continues_word, exact_first_line, first_line, similarity
from .sides import DaemonSide, RunOptions, ServerSide, Side, replay, tokenizer_layout
from .workload import Workload

SIDES = ("ours", "infill", "ours-file", "ours-lru", "ours-defs")
SIDE_HELP = {
    "ours": "the daemon over LSP, the package's files open",
    "infill": "llama-server /infill as llama.vscode sends it, the server run with its preset's flags",
    "ours-file": "the daemon with only the current file",
    "ours-lru": "the daemon, least recently used files beyond --lru-tokens left out",
    "ours-defs": "ours-lru with --definition-tokens of definitions of the names near the cursor",
}
LATENCY_NOTE = (
    "Quality figures do not depend on the machine's load, except where a completion runs into the daemon's "
    "time budget (3 s); latency does: compare it only between runs on a quiet machine."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="'default', 'tiny-KIND' or a GGUF path (default: default)")
    parser.add_argument("--cases", type=int, default=210, help="completions asked per side (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="which cases, fixed for comparable runs (default: 1)")
    parser.add_argument(
        "--sides",
        default=",".join(SIDES),
        help="comma-separated subset of: " + "; ".join(f"{k} ({v})" for k, v in SIDE_HELP.items()),
    )
    parser.add_argument(
        "--packages",
        default=",".join(p.name for p in PACKAGES),
        help="comma-separated: the packages whose sessions are replayed; the cases are drawn over all of them "
        "either way, so a package's cases are those of a full run (default: %(default)s)",
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny random-weight dense model: a smoke run")
    parser.add_argument(
        "--context-tokens", type=int, default=6000, help="tokens of open files per package (default: %(default)s)"
    )
    parser.add_argument(
        "--lru-tokens", type=int, default=2048, help="ours-lru: the daemon's file budget (default: %(default)s)"
    )
    parser.add_argument(
        "--definition-tokens",
        type=int,
        default=256,
        help="ours-defs: the daemon's completionDefinitionTokens (default: %(default)s)",
    )
    parser.add_argument(
        "--completion-tokens", type=int, default=64, help="longest completion, every side (default: %(default)s)"
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per side, 0 = all cores")
    parser.add_argument("--worst", type=int, default=5, help="worst examples printed per side (default: 5)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write every case's figures as JSON, after each package ('finished' is false until the run ends)",
    )


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Scored:
    """One side's suggestion for one case, scored."""

    side: str
    key: str
    category: str
    typed: str
    expected: str
    suggestion: str
    seconds: float
    exact: bool
    accepted: int
    accepted_line: int
    """`accepted` within the first line: what the author's line takes of it, whatever follows."""
    similarity: float
    continues: bool | None
    """Partial-word cases: the suggestion continues the typed word."""


def score(side: str, case: Case, suggestion: str, seconds: float) -> Scored:
    """`similarity` compares the first lines, or for a block case the whole suggestion with the block."""
    sim = (
        similarity(suggestion.rstrip(), case.block)
        if case.category == "next block"
        else similarity(first_line(suggestion).rstrip(), first_line(case.expected).rstrip())
    )
    partial = case.category in PARTIAL_CATEGORIES
    return Scored(
        side,
        case.key,
        case.category,
        case.typed,
        case.expected,
        suggestion,
        seconds,
        exact_first_line(suggestion, case.expected),
        accepted_chars(suggestion, case.expected),
        accepted_chars(first_line(suggestion), first_line(case.expected)),
        sim,
        continues_word(case.typed, suggestion, case.expected) if partial else None,
    )


@dataclass(frozen=True)
class Figures:
    cases: int
    exact: float
    """Share of cases whose first line is the author's."""
    accepted: int
    accepted_line: int
    similarity: float
    continues: float | None
    p50: float
    p95: float


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[int(q * 100) - 1]


def figures(rows: list[Scored]) -> Figures:
    partial = [r.continues for r in rows if r.continues is not None]
    seconds = [r.seconds for r in rows]
    return Figures(
        len(rows),
        sum(r.exact for r in rows) / len(rows) if rows else math.nan,
        sum(r.accepted for r in rows),
        sum(r.accepted_line for r in rows),
        statistics.fmean(r.similarity for r in rows) if rows else math.nan,
        sum(partial) / len(partial) if partial else None,
        _quantile(seconds, 0.5),
        _quantile(seconds, 0.95),
    )


def summarize(rows: list[Scored]) -> dict[str, dict[str, Any]]:
    """One side's figures per category present, and for all its cases."""
    present = [c for c in CATEGORIES if any(r.category == c for r in rows)]
    return {c: asdict(figures([r for r in rows if c in ("all", r.category)])) for c in (*present, "all")}


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.0%}"


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.2f}x" if b else "-"


def print_tables(rows: list[Scored], worst: int) -> None:
    sides = list(dict.fromkeys(r.side for r in rows))
    print(
        "\n| side | category | cases | exact first line | accepted chars | of them in the first line | similarity | "
        "continues the word | p50 s | p95 s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for side in sides:
        for category in (*CATEGORIES, "all"):
            mine = [r for r in rows if r.side == side and category in ("all", r.category)]
            if not mine:
                continue
            f = figures(mine)
            name = f"**{category}**" if category == "all" else category
            print(
                f"| {side} | {name} | {f.cases} | {_pct(f.exact)} | {f.accepted} | {f.accepted_line} | "
                f"{f.similarity:.2f} | {_pct(f.continues)} | {f.p50:.2f} | {f.p95:.2f} |"
            )
    base = [r for r in rows if r.side == "infill"]
    if base:
        b = figures(base)
        print("\nAgainst infill, same cases (exact: points; accepted characters: ratio):\n")
        for side in (s for s in sides if s != "infill"):
            f = figures([r for r in rows if r.side == side])
            print(
                f"- {side}: exact {100 * (f.exact - b.exact):+.0f} points, accepted {_ratio(f.accepted, b.accepted)} "
                f"({_ratio(f.accepted_line, b.accepted_line)} in the first line), p50 {f.p50 / b.p50:.2f}x"
            )
    for side in sides:
        mine = sorted((r for r in rows if r.side == side), key=lambda r: (r.similarity, r.accepted))[:worst]
        print(f"\nWorst {len(mine)} of {side}:")
        for r in mine:
            print(f"- {r.key}: typed {r.typed!r}\n    author {first_line(r.expected)!r}\n    got    {r.suggestion!r}")
    print(f"\n{LATENCY_NOTE}")


class DefinitionsSide(DaemonSide):
    """The daemon with definitions of the names near the cursor in its completion requests, the
    setting sent as an editor sends a configuration change."""

    def __init__(self, model: Path, options: RunOptions, tokens: int) -> None:
        super().__init__(model, options)
        self.tokens = tokens

    async def start(self, workload: Workload) -> None:
        await super().start(workload)
        self.session.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"completionDefinitionTokens": self.tokens})
        )


def _sides(
    wanted: list[str],
    model: Path,
    layout: Any,
    options: RunOptions,
    args: argparse.Namespace,
    server_log: Path,
    n_ctx_train: int,
) -> list[Side]:
    out: list[Side] = []
    for name in wanted:
        if name == "infill":
            # llama-server caps its context at the model's training context; past that cap, with
            # 1,024-token batches `/infill` fills it with input_extra and its FIM markers then
            # overflow it (HTTP 400). The defaults' larger batch leaves them room.
            settings = DEFAULT_SETTINGS if options.n_ctx > n_ctx_train > 0 else LLAMA_VSCODE_SETTINGS
            if settings is DEFAULT_SETTINGS:
                _log(f"infill: n_ctx {options.n_ctx} > the model's {n_ctx_train}: llama-server's default flags")
            out.append(ServerSide(ServerBuild().binary, model, layout, options, settings, server_log))
            continue
        budget = {"ours": options.context_tokens, "ours-file": 256}.get(name, args.lru_tokens)
        mine = RunOptions(options.n_ctx, budget, options.threads, options.completion_tokens, 1)
        out.append(
            DefinitionsSide(model, mine, args.definition_tokens) if name == "ours-defs" else DaemonSide(model, mine)
        )
    for name, side in zip(wanted, out, strict=True):
        side.name = name
    return out


def write_json(path: Path, label: str, args: argparse.Namespace, rows: list[Scored], finished: bool) -> None:
    """Every case's figures so far; written after each package, so a run stopped midway (a full run
    takes hours on two cores) keeps what it measured, and says that it stopped."""
    summary = {side: summarize([r for r in rows if r.side == side]) for side in dict.fromkeys(r.side for r in rows)}
    cases = [asdict(r) for r in rows]
    out = {"model": label, "seed": args.seed, "finished": finished, "summary": summary, "cases": cases}
    path.write_text(json.dumps(out, indent=2))


async def _run(model: Path, label: str, wanted: list[str], args: argparse.Namespace, logs: Path) -> list[Scored]:
    tokenizer, layout = tokenizer_layout(model)

    def count(text: str) -> int:
        return len(tokenizer.tokenize(text))

    try:
        sessions = quality_workloads(args.cases, args.seed, count, args.context_tokens, args.packages)
        rows: list[Scored] = []
        for package, session in sessions:
            workload = session.workload
            file_tokens = sum(len(layout.file_segment(rel, text)) for rel, text in workload.files.items())
            options = RunOptions(file_tokens + 3072, file_tokens + 1024, args.threads, args.completion_tokens, 1)
            _log(f"{workload.description}; {file_tokens} tokens of files")
            for side in _sides(
                wanted, model, layout, options, args, logs / f"infill-{package.name}.log", tokenizer.n_ctx_train
            ):
                result = await replay(side, workload, package.name)
                for case, request in zip(session.cases, result.requests, strict=True):
                    rows.append(score(side.name, case, request.text, request.seconds))
            if args.json is not None:
                write_json(args.json, label, args, rows, finished=False)
        return rows
    finally:
        tokenizer.close()


def run(args: argparse.Namespace) -> int:
    wanted = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(wanted) - set(SIDES)
    if unknown:
        raise ValueError(f"unknown sides {sorted(unknown)} (known: {', '.join(SIDES)})")
    args.packages = [p.strip() for p in args.packages.split(",") if p.strip()]
    unknown = set(args.packages) - {p.name for p in PACKAGES}
    if unknown:
        raise ValueError(f"unknown packages {sorted(unknown)} (known: {', '.join(p.name for p in PACKAGES)})")
    quiet.report()
    args.model = args.model or ("tiny-dense" if args.tiny else "default")
    args.threads = args.threads or os.cpu_count() or 1
    if "infill" in wanted:
        ServerBuild().ensure(_log)
    [(label, model)] = _model_paths(args.model)
    logs = Path(tempfile.mkdtemp(prefix="coderag-quality-logs-"))
    rows = asyncio.run(_run(model, label, wanted, args, logs))
    print(f"\nCompletion quality, {label}: {len(rows) // len(wanted)} cases (seed {args.seed}) per side")
    print_tables(rows, args.worst)
    if args.json is not None:
        write_json(args.json, label, args, rows, finished=True)
    return 0
