"""Smoke run of `coderag-daemon bench load` on the tiny dense model: one row per run, the loaded
ones compared with the quiet one, and the busy loop gone when the benchmark ends."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import psutil

from fixtures.tiny_models import tiny_model_path

ROOT = Path(__file__).resolve().parents[2]


def test_quiet_and_loaded_runs_side_by_side_and_the_busy_loop_ends() -> None:
    before = {p.pid for p in psutil.process_iter()}
    command = [
        *(sys.executable, "-m", "coderag_daemon", "bench", "load"),
        *("--model", str(tiny_model_path("dense")), "--replay-tokens", "1200", "--replay-lines", "3"),
        *("--chats", "1", "--fixed-threads", "1"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^machine: (quiet|NOT QUIET)", proc.stdout, re.MULTILINE)
    rows = re.findall(r"^\| (quiet|loaded|loaded, 1 threads fixed) \| (\d+) \| [\d.]+ s \|(.*)$", proc.stdout, re.M)
    assert [r[0] for r in rows] == ["quiet", "loaded", "loaded, 1 threads fixed"], proc.stdout
    assert all(int(r[1]) >= 3 for r in rows)
    assert re.search(r"\| [\d.]+x, [\d.]+x, [\d.]+x \|$", rows[1][2]), rows[1]
    assert "a busy loop holds core" in proc.stderr
    hogs = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in before and "while True" in " ".join(p.info["cmdline"] or [])
    ]
    assert not hogs
