"""Speculative decoding by prompt lookup against one token at a time, on the same completions.

The sample project's files are the cached context (as the daemon lays them out); in one file,
lines inside function bodies are taken out one at a time and a completion is asked where each
was, with the daemon's stop rule (the end of the line or of the block) and its token limit. Every
completion runs both ways, in alternating order, from the same cached context. Prints the time of
each, forward passes, drafted and accepted tokens, tokens per pass, and whether the two texts are
the same (on a quantized model a draft's batch rounds logits differently from one token at a time,
which can decide a near-tie; docs/ENGINE.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from .. import default_model
from ..engine import ContextCache, EngineOptions, Generation, GenerationOptions, Model, generate
from ..prompting.completion import StopRule, cursor_window
from ..prompting.prompts import detect_layout
from . import quiet
from .editor_session import SAMPLE

CONTEXT = ["tasktrack/models.py", "tasktrack/config.py", "tasktrack/auth.py", "tasktrack/notifications.py"]
EDITED = "tasktrack/storage.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="GGUF model (default: the embedded default model)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = the free cores")
    parser.add_argument("--completions", type=int, default=20, help="completions asked (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=64, help="longest completion (default: %(default)s)")


def _points(text: str, count: int) -> list[int]:
    """Offsets of lines inside function bodies, spread over the file (the line is taken out)."""
    lines = text.split("\n")
    body = [i for i, ln in enumerate(lines) if ln.startswith("        ") and ln.strip() and ln.strip()[0] not in "\"'#"]
    step = max(1, len(body) // count)
    return body[::step][:count]


def _generate(cache: ContextCache, target: list[list[int]], rule: StopRule, opts: GenerationOptions) -> Generation:
    cache.update(target)
    return generate(cache, opts, should_stop=rule.cut)


def run(args: argparse.Namespace) -> int:
    machine = quiet.report()
    path = Path(args.model) if args.model else default_model.model_path()
    model = Model(path)
    layout = detect_layout(model)
    files = [layout.head(SAMPLE.name)] + [layout.file_segment(rel, (SAMPLE / rel).read_text()) for rel in CONTEXT]
    n_files = sum(map(len, files))
    cache = ContextCache(model, EngineOptions(n_ctx=n_files + 2048, n_threads=args.threads))
    t0 = time.perf_counter()
    cache.update(files)
    print(f"{path.name}: {n_files} tokens of context decoded in {time.perf_counter() - t0:.1f} s", flush=True)
    text = (SAMPLE / EDITED).read_text()
    lines = text.split("\n")
    rows = []
    for k, line_no in enumerate(_points(text, args.completions)):
        indent = lines[line_no][: len(lines[line_no]) - len(lines[line_no].lstrip())]
        edited = "\n".join([*lines[:line_no], indent, *lines[line_no + 1 :]])
        offset = sum(len(ln) + 1 for ln in lines[:line_no]) + len(indent)
        window = cursor_window(edited, offset)
        target = [
            *files,
            layout.completion_tail(EDITED, window.prefix, window.suffix, head=window.head, near=window.near),
        ]
        rule = StopRule.at(window)
        base = GenerationOptions(max_tokens=args.max_tokens, stop_tokens=layout.stop_tokens)
        spec = GenerationOptions(max_tokens=args.max_tokens, stop_tokens=layout.stop_tokens, speculative=True)
        order = [(False, base), (True, spec)] if k % 2 == 0 else [(True, spec), (False, base)]
        out: dict[bool, Generation] = {}
        for speculative, opts in order:
            out[speculative] = _generate(cache, target, rule, opts)
        plain, fast = out[False], out[True]
        rows.append((plain, fast))
        print(
            f"  {k + 1:>2} line {line_no + 1:>4}: {len(plain.tokens):>2} tokens, "
            f"one at a time {plain.total_ms:6.0f} ms, "
            f"speculative {fast.total_ms:6.0f} ms in {fast.forward_passes:>2} passes "
            f"({fast.accepted_tokens}/{fast.draft_tokens} drafted taken), "
            f"{'same' if plain.text == fast.text else 'DIFFERENT'}",
            flush=True,
        )
    cache.close()
    _summary(rows, machine)
    return 0


def _summary(rows: list[tuple[Generation, Generation]], machine: quiet.Quietness) -> None:
    plain_ms = [p.total_ms for p, _ in rows]
    fast_ms = [f.total_ms for _, f in rows]
    tokens = sum(len(f.tokens) for _, f in rows)
    passes = sum(f.forward_passes for _, f in rows)
    drafted = sum(f.draft_tokens for _, f in rows)
    accepted = sum(f.accepted_tokens for _, f in rows)
    same = sum(p.text == f.text for p, f in rows)
    print()
    print(machine.line())
    print("| | one token at a time | speculative |")
    print("|---|---|---|")
    print(f"| completion time, median | {statistics.median(plain_ms):.0f} ms | {statistics.median(fast_ms):.0f} ms |")
    print(f"| completion time, total | {sum(plain_ms) / 1000:.1f} s | {sum(fast_ms) / 1000:.1f} s |")
    print(f"| tokens per forward pass | 1.00 | {tokens / max(passes, 1):.2f} ({tokens} tokens, {passes} passes) |")
    print(f"| drafted tokens taken | | {accepted} of {drafted} ({accepted / max(drafted, 1):.0%}) |")
    print(f"| same text both ways | {same} of {len(rows)} | |")
