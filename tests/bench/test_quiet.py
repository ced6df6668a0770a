"""The benchmarks' check that nothing else uses the CPU."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from coderag_daemon.bench import quiet


def test_a_busy_process_that_is_not_ours_makes_the_machine_not_quiet() -> None:
    # Started through a shell that exits at once, so the busy loop is not a child of this process
    # (a benchmark's own children are left out of the sample).
    out = subprocess.run(
        ["sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(out.stdout.strip())
    try:
        time.sleep(0.2)
        q = quiet.sample(seconds=1.0, top=10)
    finally:
        psutil.Process(pid).kill()
    busy = {p: pct for _, p, pct in q.busiest}
    assert busy.get(pid, 0.0) > 30.0, q
    assert q.busy_share >= 0.3 / q.cores
    if not q.quiet:
        assert f"pid {pid}" in q.line() and q.line().startswith("machine: NOT QUIET")


def test_the_verdict_follows_the_busy_share() -> None:
    assert quiet.Quietness(2, 0.05, []).line().startswith("machine: quiet (5% of 2 cores")
    line = quiet.Quietness(2, 0.5, [("python", 7, 99.0)]).line()
    assert line.startswith("machine: NOT QUIET (50% of 2 cores") and "python (pid 7) 99% of a core" in line
