"""Engine benchmark: a mid-context edit and an end edit on a context of real source files.

Side by side in one run, per model: (a) this engine, (b) llama-cpp-python's `Llama` with its own
prefix reuse (default settings), (c) a full reprocess; plus the causal lower bound N - p, the
checkpoint memory, the prefill overhead of taking checkpoints, and whether the incremental result
is the same as a fresh evaluation with the same settings (greedy continuation and logits).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from .. import default_model
from ..engine import ContextCache, EngineOptions, GenerationOptions, Model, generate
from ..engine.cache import common_prefix
from ..engine.options import SwaMode
from ..engine.threads import usable_cores
from . import quiet
from .workload import STDLIB, STDLIB_SOURCES

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default="tiny,default,gemma3-270m",
        help="comma-separated: 'tiny' (all tiny kinds), 'default', 'gemma3-270m' or GGUF paths; "
        "packaged models that are not installed are skipped (default: %(default)s)",
    )
    parser.add_argument("--tokens", type=int, default=8192, help="context size in tokens (default: %(default)s)")
    parser.add_argument(
        "--interval",
        type=int,
        default=EngineOptions.checkpoint_interval,
        help="checkpoint interval (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads, 0 = the free cores (llama-cpp-python: all cores)"
    )
    parser.add_argument(
        "--swa-mode",
        choices=("auto", "checkpoints", "full"),
        default="auto",
        help="sliding-window models: small cache with checkpoints, or the full-size cache (default: %(default)s)",
    )
    parser.add_argument(
        "--sources",
        type=Path,
        default=None,
        help="folder of source files for the context (default: Python's standard library)",
    )
    parser.add_argument("--skip-llama-cpp-python", action="store_true", help="leave out side (b)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")


@dataclass
class Side:
    tokens: int
    seconds: float


@dataclass
class EditResult:
    edit: str
    n_tokens: int
    first_changed: int
    ours: Side
    restore_kind: str
    restored_from: int
    llama_cpp_python: Side | None
    full: Side
    greedy_match: bool | None = None
    max_logit_diff: float | None = None

    @property
    def lower_bound(self) -> int:
        return self.n_tokens - self.first_changed


@dataclass
class ModelResult:
    model: str
    kind: str
    strategy: str
    cold_seconds: float
    cold_seconds_without_checkpoints: float
    checkpoints: int
    checkpoint_bytes: int
    edits: list[EditResult] = field(default_factory=list)


def source_files(folder: Path | None) -> list[Path]:
    if folder is None:
        return [STDLIB / n for n in STDLIB_SOURCES]
    return sorted(p for p in folder.rglob("*") if p.suffix in {".py", ".js", ".ts", ".rs", ".go", ".c", ".h"})


def build_context(model: Model, files: list[Path], n_tokens: int) -> tuple[list[list[int]], list[str]]:
    """Segments of about n_tokens in all, at least eight files, each file cut to a share of it."""
    share = max(n_tokens // 8, 64)
    segments, names = [], []
    total = 0
    for path in files:
        tokens = model.tokenize(f"# {path.name}\n{path.read_text(encoding='utf-8')}\n")[:share]
        tokens = tokens[: n_tokens - total]
        segments.append(tokens)
        names.append(path.name)
        total += len(tokens)
        if total >= n_tokens:
            break
    return segments, names


def edited(model: Model, segments: list[list[int]], where: str) -> list[list[int]]:
    """Insert one line of code in the middle of the middle segment, or near the end of the last."""
    segs = [list(s) for s in segments]
    line = model.tokenize("    retries = max(retries - 1, 0)\n")
    if where == "mid":
        s = segs[len(segs) // 2]
        at = len(s) // 2
    else:
        s = segs[-1]
        at = len(s) - 8
    s[at:at] = line
    return segs


def _flat(segments: list[list[int]]) -> list[int]:
    return [t for s in segments for t in s]


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


class _LlamaCppPython:
    """llama-cpp-python's `Llama` as users run it: default settings, its own prefix reuse."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_batch=512, n_threads=n_threads, verbose=False)
        self.evaluated = 0
        original = self.llm.eval

        def counting_eval(tokens: Sequence[int]) -> None:
            self.evaluated += len(tokens)
            original(tokens)

        self.llm.eval = counting_eval  # type: ignore[method-assign]

    def run(self, tokens: list[int]) -> Side:
        before = self.evaluated
        _, seconds = _timed(lambda: next(iter(self.llm.generate(tokens, temp=0.0))))
        return Side(self.evaluated - before, seconds)

    def close(self) -> None:
        self.llm.close()


def bench_model(path: Path, label: str, args: argparse.Namespace, log: Callable[[str], None]) -> ModelResult:
    model = Model(path)
    n_tokens = min(args.tokens, model.n_ctx_train - 256) if model.n_ctx_train > 0 else args.tokens
    segments, names = build_context(model, source_files(args.sources), n_tokens)
    n_ctx = len(_flat(segments)) + 512
    opts = EngineOptions(n_ctx=n_ctx, checkpoint_interval=args.interval, n_threads=args.threads, swa_mode=args.swa_mode)
    ours = ContextCache(model, opts)
    # The same engine without checkpoints: the full-reprocess side and the overhead baseline.
    swa_mode: SwaMode = "full" if ours.strategy == "swa-full" else "checkpoints"
    plain = ContextCache(
        model,
        EngineOptions(
            n_ctx=n_ctx,
            checkpoint_interval=args.interval,
            n_threads=args.threads,
            checkpoint_budget_bytes=0,
            swa_mode=swa_mode,
        ),
    )
    log(
        f"{label}: {model.kind} model, strategy {ours.strategy}, {len(_flat(segments))} tokens in {len(segments)} files"
    )
    for cache in (ours, plain):  # first use allocates and faults in buffers: keep that out of the timings
        cache.update([segments[0][:256]])
        cache.clear()
    _, cold = _timed(lambda: ours.update(segments))
    _, cold_plain = _timed(lambda: plain.update(segments))
    result = ModelResult(
        label, model.kind, ours.strategy, cold, cold_plain, len(ours.checkpoints), ours.checkpoints.nbytes
    )
    log(
        f"  cold prefill {cold:.2f}s with checkpoints, {cold_plain:.2f}s without; "
        f"{len(ours.checkpoints)} checkpoints, {ours.checkpoints.nbytes / 2**20:.1f} MiB"
    )

    # The exactness reference: a fresh cache with the same settings, so it decodes in the same
    # batches (on quantized sliding-window models, other batch sizes alone move logits by ~1).
    reference = ContextCache(model, opts) if ours.uses_checkpoints else plain
    other = None if args.skip_llama_cpp_python else _LlamaCppPython(path, n_ctx, opts.n_threads or usable_cores())
    if other is not None:
        other.run(_flat(segments))
    previous = segments
    for where in ("mid", "end"):
        target = edited(model, previous, where)
        stats, seconds = _timed(partial(ours.update, target))
        plain.clear()
        full_stats, full_seconds = _timed(partial(plain.update, target))
        edit = EditResult(
            where,
            stats.n_tokens,
            common_prefix(_flat(previous), _flat(target)),
            Side(stats.tokens_reprocessed, seconds),
            stats.restore_kind,
            stats.restored_from,
            other.run(_flat(target)) if other is not None else None,
            Side(full_stats.tokens_reprocessed, full_seconds),
        )
        if reference is not plain:
            reference.clear()
            reference.update(target)
        edit.max_logit_diff = float(np.abs(ours.logits() - reference.logits()).max())
        greedy = GenerationOptions(max_tokens=16)
        edit.greedy_match = generate(ours, greedy).tokens == generate(reference, greedy).tokens
        result.edits.append(edit)
        log(
            f"  {where} edit at {edit.first_changed}: ours {edit.ours.tokens} tok {edit.ours.seconds:.2f}s "
            f"(from {stats.restore_kind} at {stats.restored_from}); "
            f"full {edit.full.tokens} tok {edit.full.seconds:.2f}s"
            + (
                f"; llama-cpp-python {edit.llama_cpp_python.tokens} tok {edit.llama_cpp_python.seconds:.2f}s"
                if edit.llama_cpp_python
                else ""
            )
            + f"; greedy match {edit.greedy_match}, max logit diff {edit.max_logit_diff:.2g}"
        )
        previous = target
    if other is not None:
        other.close()
    for cache in {id(c): c for c in (ours, plain, reference)}.values():
        cache.close()
    model.close()
    gc.collect()
    return result


def _models(spec: str, log: Callable[[str], None]) -> list[tuple[str, Path]]:
    from fixtures.tiny_models import KINDS, tiny_model_path

    out = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        if name == "tiny":
            out += [(f"tiny-{kind}", tiny_model_path(kind)) for kind in KINDS]
        elif name == "default" or name in default_model.PACKAGED_MODELS:
            packaged = default_model.DEFAULT_MODEL if name == "default" else default_model.PACKAGED_MODELS[name]
            if default_model.is_installed(packaged):
                out.append((packaged.name, default_model.model_path(packaged)))
            else:
                log(f"skipping {packaged.name}: not installed ({packaged.install_hint})")
        else:
            out.append((Path(name).name, Path(name)))
    return out


def print_table(results: list[ModelResult]) -> None:
    print()
    print(
        "| model | strategy | edit | N | N-p (bound) | ours tok | ours s | llama-cpp-python tok | s "
        "| full tok | full s | full/ours | exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for e in r.edits:
            lcp = e.llama_cpp_python
            print(
                f"| {r.model} | {r.strategy} | {e.edit} | {e.n_tokens} | {e.lower_bound} | "
                f"{e.ours.tokens} | {e.ours.seconds:.2f} | "
                f"{lcp.tokens if lcp else '-'} | {f'{lcp.seconds:.2f}' if lcp else '-'} | "
                f"{e.full.tokens} | {e.full.seconds:.2f} | "
                f"{e.full.seconds / max(e.ours.seconds, 1e-9):.1f}x | "
                f"{'greedy same' if e.greedy_match else 'greedy DIFFERS'}, Δlogit {e.max_logit_diff:.2g} |"
            )
    print()
    print("| model | cold prefill s (checkpoints) | without | overhead | checkpoints | checkpoint MiB |")
    print("|---|---|---|---|---|---|")
    for r in results:
        overhead = (r.cold_seconds / r.cold_seconds_without_checkpoints - 1) * 100
        print(
            f"| {r.model} | {r.cold_seconds:.2f} | {r.cold_seconds_without_checkpoints:.2f} | {overhead:+.1f}% | "
            f"{r.checkpoints} | {r.checkpoint_bytes / 2**20:.1f} |"
        )
    print(f"\npeak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def run(args: argparse.Namespace) -> int:
    quiet.report()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = [bench_model(path, label, args, log) for label, path in _models(args.models, log)]
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0
