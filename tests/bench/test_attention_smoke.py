"""Smoke run of `coderag-daemon bench attention` on the tiny dense model: one table row per context
length, both settings measured, and bad arguments refused with a clear message."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import tiny_model_path

ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "coderag_daemon",
        "bench",
        "attention",
        "--model",
        str(tiny_model_path("dense")),
        "--threads",
        "1",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_one_row_per_context_length() -> None:
    proc = _bench("--lengths", "512,128", "--tail", "16", "--generate", "4", "--rounds", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(
        r"^\| (\d+) \| \d+ / \d+ ms \([\d.]+x\) \| [\d.]+ / [\d.]+ \([\d.]+x\) \| (?:yes|no) \|$",
        proc.stdout,
        re.MULTILINE,
    )
    assert [int(r) for r in rows] == [128, 512]
    assert re.search(r"\d+ tokens/s flash off, \d+ tokens/s flash on", proc.stdout)


def test_bad_lengths_are_refused() -> None:
    proc = _bench("--lengths", "1024,lots")
    assert proc.returncode == 2
    assert "--lengths takes whole numbers" in proc.stderr
