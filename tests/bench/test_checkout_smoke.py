"""Smoke run of `bench checkout`'s round trip on the tiny dense model: switching back to the first
release loads its saved state (nothing decoded) when the daemon saves its cache, and decodes the
changed files again when it does not."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from coderag_daemon.bench.checkout_bench import _round_trip
from fixtures.tiny_models import tiny_model_path

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample_project" / "tasktrack"


def test_switching_back_loads_the_saved_state_only_when_the_cache_is_saved(tmp_path: Path) -> None:
    old = {
        f"pkg/{name}": "".join((SAMPLE / name).read_text().splitlines(keepends=True)[:30])
        for name in ("config.py", "auth.py", "storage.py")
    }
    new = {**old, "pkg/config.py": old["pkg/config.py"].replace("=", "= ") + "# the other release\n"}
    args = argparse.Namespace(model=str(tiny_model_path("dense")), threads=1, package="pkg")
    saving = asyncio.run(_round_trip(args, tmp_path, old, new, persist=True))
    not_saving = asyncio.run(_round_trip(args, tmp_path, old, new, persist=False))
    # all files cold; the changed file and those after it; then back: from the saved state, or decoded
    assert saving[0].decoded > 1000 and saving[1].decoded > 500 and saving[2].decoded == 0, saving
    assert not_saving[1].decoded > 500 and not_saving[2].decoded > 500, not_saving
