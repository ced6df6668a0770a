"""Is the machine quiet? Every benchmark asks before it starts and prints the answer with its figures.

A benchmark's times are only comparable when nothing else uses the CPU: on two cores one busy
process slowed a whole replay several times over. So each run samples the CPU use of every other
process for a moment, says whether the machine is quiet, and names what is busy when it is not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

BUSY_SHARE = 0.10
"""Other processes using more than this share of the machine's cores make it 'not quiet'."""


@dataclass(frozen=True)
class Quietness:
    cores: int
    busy_share: float
    """CPU time used by other processes over the sample, as a share of all cores."""
    busiest: list[tuple[str, int, float]]
    """(name, pid, percent of one core) of the busiest other processes."""

    @property
    def quiet(self) -> bool:
        return self.busy_share <= BUSY_SHARE

    def line(self) -> str:
        load = f"{self.busy_share:.0%} of {self.cores} cores busy with other processes"
        if self.quiet:
            return f"machine: quiet ({load})"
        top = ", ".join(f"{name} (pid {pid}) {pct:.0f}% of a core" for name, pid, pct in self.busiest)
        return f"machine: NOT QUIET ({load}: {top}); times below are slower than on a quiet machine"


def sample(seconds: float = 2.0, top: int = 3) -> Quietness:
    """CPU use of every process but this one (and its children) over `seconds`."""
    own = {os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))}
    procs = [p for p in psutil.process_iter(["name"]) if p.pid not in own]
    for p in procs:
        try:
            p.cpu_percent(None)  # starts the process's measurement interval
        except psutil.Error:
            pass
    time.sleep(seconds)
    usage: list[tuple[str, int, float]] = []
    for p in procs:
        try:
            usage.append((p.info["name"] or "?", p.pid, p.cpu_percent(None)))
        except psutil.Error:
            continue
    usage.sort(key=lambda u: u[2], reverse=True)
    cores = psutil.cpu_count() or 1
    busy = sum(u[2] for u in usage) / 100 / cores
    return Quietness(cores, busy, [u for u in usage[:top] if u[2] >= 1.0])


def report(log: Callable[[str], None] = print) -> Quietness:
    """Sample, print the verdict (it goes with the figures), and return it."""
    q = sample()
    log(q.line())
    return q
