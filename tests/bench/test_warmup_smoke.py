"""Smoke run of `coderag-daemon bench warmup` on the tiny dense model: a completion per line typed
while the project is decoded, the warm-up timed in both runs, side by side."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import tiny_model_path

ROOT = Path(__file__).resolve().parents[2]


def test_completions_during_the_warm_up_and_the_typing_only_run() -> None:
    command = [
        *(sys.executable, "-m", "coderag_daemon", "bench", "warmup", "--model", str(tiny_model_path("dense"))),
        *("--lines", "3", "--pause", "0.2", "--threads", "1"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(re.findall(r"completion +\d+: +[\d.]+ s", proc.stderr)) == 3
    assert re.search(r"^\| completions \| [\d.]+ s \([\d.]+x\) \| 3 \| [\d.]+ s \| [\d.]+ s \|", proc.stdout, re.M)
    assert re.search(r"^\| typing-only \| [\d.]+ s \| 0 \|", proc.stdout, re.M)
