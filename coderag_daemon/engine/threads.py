"""How many CPU threads the model uses: the cores other programs leave free, checked as it runs.

llama.cpp splits every operation of a forward pass between its threads and waits for the slowest
at the end of each one. When another program keeps one of two cores busy, the thread that shares
that core runs a fraction of the time (less still at the daemon's lower priority), and every
operation waits for it: one busy core made a whole editing session 15 times slower, while one
thread on the free core loses only about half of the speed. So with `threads` 0 the engine counts
the cores that other processes use (the machine's CPU time minus this process's own, from
/proc) and uses the rest, re-checked at most every `interval` seconds between forward passes.
Elsewhere than Linux it uses every core it may run on.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("coderag_daemon.engine")

BUSY_TOLERANCE = 0.35
"""Cores' worth of other work tolerated before a thread is given up: an editor's short bursts do not
cost a thread, one busy process (about a whole core) does."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _machine_busy_seconds() -> float | None:
    """CPU time spent busy by the whole machine, in seconds (all cores), from /proc/stat."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    values = [int(v) for v in fields[1:9]]
    busy = sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU time of this process, every thread, in seconds."""
    t = os.times()
    return t.user + t.system


@dataclass
class OthersLoad:
    """Cores' worth of CPU time other processes used since the last sample."""

    clock: Callable[[], float] = time.monotonic
    machine: Callable[[], float | None] = _machine_busy_seconds
    own: Callable[[], float] = _own_seconds
    _last: tuple[float, float, float] | None = field(default=None, init=False)

    def sample(self) -> float | None:
        """Others' use since the previous call, in cores; None on the first call or without /proc."""
        busy = self.machine()
        if busy is None:
            return None
        now = (self.clock(), busy, self.own())
        last, self._last = self._last, now
        if last is None or now[0] <= last[0]:
            return None
        others = (now[1] - last[1]) - (now[2] - last[2])
        return max(0.0, others / (now[0] - last[0]))


@dataclass
class ThreadPolicy:
    """Threads for the next forward pass. `fixed` > 0: always that many (the `threads` setting);
    0: the usable cores minus those other processes keep busy, at least one."""

    fixed: int = 0
    interval: float = 0.5
    cores: int = field(default_factory=usable_cores)
    load: OthersLoad = field(default_factory=OthersLoad)
    clock: Callable[[], float] = time.monotonic
    current: int = 0
    _checked: float = field(default=-math.inf, init=False)

    def __post_init__(self) -> None:
        self.current = self.fixed if self.fixed > 0 else self.cores
        if self.fixed <= 0:
            self.load.sample()  # starts the first measurement interval

    def threads(self) -> int:
        """How many threads to use now (measuring again once `interval` has passed)."""
        if self.fixed > 0:
            return self.fixed
        now = self.clock()
        if now - self._checked < self.interval:
            return self.current
        self._checked = now
        others = self.load.sample()
        if others is None:
            return self.current
        wanted = min(self.cores, max(1, self.cores - math.ceil(others - BUSY_TOLERANCE)))
        if wanted != self.current:
            log.info(
                "model threads %d -> %d (other processes use %.2f of %d cores)",
                self.current,
                wanted,
                others,
                self.cores,
            )
            self.current = wanted
        return self.current
