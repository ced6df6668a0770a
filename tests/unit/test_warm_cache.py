"""What the warm cache does when the disk refuses a save, and how saved states are matched."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from coderag_daemon.persistence.state_store import PersistenceUnavailable, StateStore
from coderag_daemon.worker.warm_cache import WarmCache, matching_tokens


class FullDisk(StateStore):
    def __init__(self) -> None:
        super().__init__(Path("/nonexistent"))
        self.saves = 0

    def save(self, roots: Any, key: Any, meta: Any, payload: Any) -> Any:
        self.saves += 1
        raise PersistenceUnavailable("cannot save cache states in /cache: No space left on device")


def test_a_disk_that_refuses_turns_saving_off_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    store = FullDisk()
    warm = WarmCache(store)
    with caplog.at_level(logging.WARNING, logger="coderag_daemon.worker.warm_cache"):
        for _ in range(2):
            warm._writer.put(("/ws",), {}, {"tokens": 1}, b"state", 1.0)
            warm._writer.flush(10)
    warm.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "No space left on device" in warnings[0] and "no longer saved" in warnings[0]
    assert not warm.enabled and store.saves == 2  # the one already handed over was tried too


def test_a_saved_state_matches_by_its_leading_files_in_place() -> None:
    saved = [["/ws/a.py", "1", 100], ["/ws/b.py", "2", 50], ["/ws/c.py", "3", 10]]
    assert matching_tokens(saved, [("/ws/a.py", "1", 0), ("/ws/b.py", "2", 0), ("/ws/c.py", "3", 0)]) == 160
    assert matching_tokens(saved, [("/ws/a.py", "1", 0), ("/ws/b.py", "changed", 0), ("/ws/c.py", "3", 0)]) == 100
    assert matching_tokens(saved, [("/ws/b.py", "2", 0), ("/ws/a.py", "1", 0)]) == 0  # another order
