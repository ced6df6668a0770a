"""What one completion costs as the context grows, with flash attention off and on, side by side.

A completion typed at once reprocesses a short request tail (60–100 tokens at an 8K context in
`bench daemon`) and then decodes its line one token at a time. Every new token attends to all the
tokens before it, so both slow down with the context; flash attention changes how that attention
is computed. This measures both parts at a few context lengths, for the two settings in turn on
the same machine in the same run, and says whether their greedy continuations agree.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from .. import default_model
from ..engine import ContextCache, EngineOptions, Model
from . import quiet
from .engine_bench import source_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="GGUF model (default: the embedded default model)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = the free cores")
    parser.add_argument("--lengths", default="1024,4096,8192", help="context lengths in tokens (default: %(default)s)")
    parser.add_argument(
        "--tail", type=int, default=80, help="request tail reprocessed per completion (default: %(default)s)"
    )
    parser.add_argument(
        "--generate", type=int, default=16, help="tokens generated per completion (default: %(default)s)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="completions per length and setting; medians are shown (default: %(default)s)",
    )


def _lengths(text: str) -> list[int]:
    try:
        lengths = sorted({int(x) for x in text.split(",")})
    except ValueError:
        raise ValueError(f"--lengths takes whole numbers separated by commas, got {text!r}") from None
    if not lengths or lengths[0] < 1:
        raise ValueError(f"--lengths must be positive, got {text!r}")
    return lengths


def _completion(
    cache: ContextCache, context: list[int], tail: list[int], n_generate: int
) -> tuple[float, float, list[int]]:
    """Prefill the tail after the cached context and decode greedily; (tail ms, ms per token, tokens)."""
    cache.update([context])  # back to the context alone, so the tail is decoded again
    t0 = time.perf_counter()
    cache.update([context, tail])
    tail_ms = (time.perf_counter() - t0) * 1000
    logits = cache.logits()
    tokens: list[int] = []
    t0 = time.perf_counter()
    for _ in range(n_generate):
        tokens.append(int(np.argmax(logits)))
        logits = cache.append(tokens[-1])
    per_token_ms = (time.perf_counter() - t0) * 1000 / n_generate
    return tail_ms, per_token_ms, tokens


def run(args: argparse.Namespace) -> int:
    quiet.report()
    lengths = _lengths(args.lengths)
    if args.tail < 1 or args.generate < 1 or args.rounds < 1:
        raise ValueError("--tail, --generate and --rounds must be at least 1")
    model = Model(args.model or default_model.resolve_default())
    text = "".join(f"# {p.name}\n{p.read_text(encoding='utf-8')}\n" for p in source_files(None))
    tokens = model.tokenize(text)
    need = lengths[-1] + args.tail
    if len(tokens) < need:
        raise ValueError(f"the sample sources give {len(tokens)} tokens; --lengths and --tail need {need}")
    n_ctx = need + args.generate + 64
    caches = {
        flash: ContextCache(model, EngineOptions(n_ctx=n_ctx, n_threads=args.threads, flash_attn=flash))
        for flash in (False, True)
    }
    print(
        f"{model.path.name}, {caches[False].threads.current} threads; tail {args.tail} tokens, "
        f"{args.generate} generated, median of {args.rounds}",
        flush=True,
    )
    print("| context | tail prefill, flash off / on | ms per generated token, off / on | greedy tokens agree |")
    print("|---|---|---|---|")
    grown = {flash: [0, 0.0] for flash in caches}  # tokens, ms
    for length in lengths:
        context, tail = tokens[:length], tokens[length : length + args.tail]
        for flash, cache in caches.items():
            stats = cache.update([context])
            grown[flash][0] += stats.tokens_reprocessed
            grown[flash][1] += stats.decode_ms
        figures: dict[bool, list[tuple[float, float]]] = {flash: [] for flash in caches}
        outputs: dict[bool, list[int]] = {}
        for _ in range(args.rounds):
            for flash, cache in caches.items():  # alternate, so a slow spell of the machine hits both
                tail_ms, per_token_ms, outputs[flash] = _completion(cache, context, tail, args.generate)
                figures[flash].append((tail_ms, per_token_ms))
        tail_median = {f: statistics.median(t for t, _ in figures[f]) for f in caches}
        token_ms = {f: statistics.median(g for _, g in figures[f]) for f in caches}
        print(
            f"| {length} | {tail_median[False]:.0f} / {tail_median[True]:.0f} ms "
            f"({tail_median[True] / tail_median[False]:.2f}x) "
            f"| {token_ms[False]:.1f} / {token_ms[True]:.1f} ({token_ms[True] / token_ms[False]:.2f}x) "
            f"| {'yes' if outputs[False] == outputs[True] else 'no'} |",
            flush=True,
        )
    rate = {f: grown[f][0] / grown[f][1] * 1000 for f in caches}
    print(
        f"\nprefill of the context to {lengths[-1]} tokens: {rate[False]:.0f} tokens/s flash off, "
        f"{rate[True]:.0f} tokens/s flash on ({rate[True] / rate[False]:.2f}x)"
    )
    return 0
