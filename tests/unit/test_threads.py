"""The model's thread count follows the cores other programs leave free."""

from __future__ import annotations

from coderag_daemon.engine.threads import OthersLoad, ThreadPolicy


class Machine:
    """A fake clock and CPU counters: `step(seconds, others, own)` advances them."""

    def __init__(self) -> None:
        self.now = 0.0
        self.busy = 0.0
        self.mine = 0.0

    def step(self, seconds: float, others: float, own: float = 0.0) -> None:
        self.now += seconds
        self.busy += (others + own) * seconds
        self.mine += own * seconds

    def policy(self, cores: int = 2, fixed: int = 0) -> ThreadPolicy:
        load = OthersLoad(clock=lambda: self.now, machine=lambda: self.busy, own=lambda: self.mine)
        return ThreadPolicy(fixed, interval=0.5, cores=cores, load=load, clock=lambda: self.now)


def test_a_busy_core_costs_one_thread_and_it_comes_back_when_the_core_is_free() -> None:
    m = Machine()
    policy = m.policy()
    assert policy.threads() == 2
    m.step(1.0, others=1.0, own=1.0)
    assert policy.threads() == 1
    m.step(1.0, others=1.0, own=1.0)
    assert policy.threads() == 1
    m.step(1.0, others=0.0, own=2.0)
    assert policy.threads() == 2


def test_the_own_processs_work_is_not_counted_as_others() -> None:
    m = Machine()
    policy = m.policy()
    m.step(1.0, others=0.1, own=1.9)
    assert policy.threads() == 2


def test_short_bursts_of_other_work_keep_every_thread() -> None:
    m = Machine()
    policy = m.policy(cores=4)
    m.step(1.0, others=0.3, own=3.0)
    assert policy.threads() == 4
    m.step(1.0, others=2.0, own=2.0)
    assert policy.threads() == 2
    m.step(1.0, others=9.0, own=0.5)
    assert policy.threads() == 1  # never fewer than one


def test_it_measures_again_only_after_its_interval() -> None:
    m = Machine()
    policy = m.policy()
    m.step(1.0, others=1.0, own=1.0)
    assert policy.threads() == 1
    m.step(0.2, others=0.0, own=2.0)
    assert policy.threads() == 1  # within the interval: the last count
    m.step(0.4, others=0.0, own=2.0)
    assert policy.threads() == 2


def test_a_fixed_count_is_kept_whatever_the_load() -> None:
    m = Machine()
    policy = m.policy(fixed=2)
    m.step(1.0, others=1.0, own=1.0)
    assert policy.threads() == 2


def test_without_cpu_counters_every_core_is_used() -> None:
    load = OthersLoad(machine=lambda: None)
    assert ThreadPolicy(0, cores=2, load=load).threads() == 2
