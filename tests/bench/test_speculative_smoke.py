"""Smoke run of `coderag-daemon bench speculative` on the tiny dense model: every completion both
ways, and the summary's figures add up."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import tiny_model_path

ROOT = Path(__file__).resolve().parents[2]


def test_each_completion_both_ways_and_a_summary() -> None:
    command = [
        *(sys.executable, "-m", "coderag_daemon", "bench", "speculative", "--model", str(tiny_model_path("dense"))),
        *("--completions", "3", "--max-tokens", "24", "--threads", "1"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(
        r"^\s+\d+ line\s+\d+:\s+(\d+) tokens, .* in\s+(\d+) passes \((\d+)/(\d+) drafted", proc.stdout, re.M
    )
    assert len(rows) == 3
    tokens = sum(int(r[0]) for r in rows)
    passes = sum(int(r[1]) for r in rows)
    taken = sum(int(r[2]) for r in rows)
    summary = re.search(
        r"\| tokens per forward pass \| 1.00 \| ([\d.]+) \((\d+) tokens, (\d+) passes\) \|", proc.stdout
    )
    assert summary and (int(summary[2]), int(summary[3])) == (tokens, passes)
    # every token is one a forward pass picked or a draft token taken, but at most one of each
    # completion: passes count the tokens a next one was picked after (Generation.forward_passes),
    # and a completion the stop rule ends on a token has no pass after it
    assert all(int(p) + int(t) >= int(n) - 1 for n, p, t, _ in rows), rows
    assert passes + taken >= tokens - len(rows)
    assert re.search(r"\| same text both ways \| \d of 3 \|", proc.stdout)
