"""Smoke run of `coderag-daemon bench restart` on the tiny dense model and a small project: the
restart loads the saved state, every file is cached, and the completion is the one before."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fixtures.tiny_models import tiny_model_path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "fixtures" / "sample_project" / "tasktrack"


def test_a_restart_loads_the_saved_state_and_answers_the_same(tmp_path: Path) -> None:
    project = tmp_path / "small"
    (project / "tasktrack").mkdir(parents=True)
    for name in ("config.py", "auth.py"):  # a few KB: within the tiny model's context budget
        text = (SAMPLE / name).read_text()
        (project / "tasktrack" / name).write_text("".join(text.splitlines(keepends=True)[:45]))
    command = [
        sys.executable,
        "-m",
        "coderag_daemon",
        "bench",
        "restart",
        "--model",
        str(tiny_model_path("dense")),
        "--threads",
        "1",
        "--project",
        str(project),
        "--line",
        "30",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^\| every file cached \| [\d.]+ s \| [\d.]+ s \| [\d.]+x \|$", proc.stdout, re.MULTILINE)
    assert "| every file cached then | yes | yes | |" in proc.stdout
    assert re.search(r"Saved state loaded: [1-9]\d* tokens", proc.stdout)
    assert "First completion after the restart: the same as before it" in proc.stdout
