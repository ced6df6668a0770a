"""End-to-end smoke run of `coderag-daemon bench compare` on tiny models: every side, both workloads,
shortened.

The first run builds llama-server into .build/ (several minutes); later runs reuse it. The checks are
invariants of the cache strategies, not timings: a fixed-order client that edits the middle file
reprocesses everything after it, a sliding-window or recurrent model without a usable checkpoint
reprocesses the whole prompt (unless llama-server keeps a full-size window, `--swa-full`), and the
daemon reprocesses less and answers exactly as from an empty cache.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = ("tiny-dense", "tiny-swa", "tiny-recurrent")
# The plots need matplotlib, which comes with the `bench` extra, not the `test` one.
PLOTS = importlib.util.find_spec("matplotlib") is not None
SIDES = {"coderag-daemon", "llama-server default", "llama-server best", "llama-cpp-python"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[tuple[str, str, str], dict], Path]:
    out = tmp_path_factory.mktemp("compare")
    command = [
        sys.executable,
        "-m",
        "coderag_daemon",
        "bench",
        "compare",
        "--tiny",
        "--threads",
        "1",
        "--models",
        ",".join(MODELS),
        "--json",
        str(out / "r.json"),
    ]
    proc = subprocess.run(
        command + (["--plots", str(out)] if PLOTS else []),
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {(r["model"], r["workload"], r["side"]): r for r in json.loads((out / "r.json").read_text())}
    return proc.stdout, results, out


def _tokens(result: dict, label: str) -> int:
    return next(q["tokens"] for q in result["requests"] if q["label"] == label)


def _total(result: dict) -> int:
    return sum(q["tokens"] for q in result["requests"]) + result["background_tokens"]


def test_every_side_and_table(run) -> None:
    stdout, results, _ = run
    assert set(results) == {(m, w, s) for m in MODELS for w in ("mid-edit", "replay") for s in SIDES}
    for line in (
        "| model | workload | side | requests | tokens reprocessed (total)",
        "Ratios ours / theirs",
        "mid-edit, each request",
    ):
        assert line in stdout
    for r in results.values():
        assert r["peak_rss"] > 0 and all(q["seconds"] > 0 for q in r["requests"])
        if r["workload"] == "mid-edit":  # the first request fills the cache: the whole prompt
            assert r["requests"][0]["tokens"] + r["background_tokens"] > 3000, r["side"]


@pytest.mark.parametrize("model", MODELS)
def test_mid_edit(run, model: str) -> None:
    _, results, _ = run
    ours = results[(model, "mid-edit", "coderag-daemon")]
    server = results[(model, "mid-edit", "llama-server default")]
    assert ours["exact"] is True
    # The fixed-order client sends every file but the current one ahead of it: an edit in the middle
    # file changes the prompt from there on, so the server reprocesses at least a third of it.
    assert _tokens(server, "mid edit") >= _tokens(server, "cold") // 3
    if model == "tiny-dense":  # both truncate at the edit; the daemon's request tail is a little longer
        assert _tokens(ours, "mid edit") <= 1.05 * _tokens(server, "mid edit")
    else:  # the server finds no checkpoint before the edit and starts over; the daemon restores one
        assert _tokens(ours, "mid edit") < 0.75 * _tokens(server, "mid edit")
    # The daemon moved the middle file to the end; the fixed-order client reprocesses it again.
    assert _tokens(ours, "end edit") < _tokens(server, "end edit")
    assert _total(ours) < _total(server)


def test_recurrent_without_checkpoints_reprocesses_everything(run) -> None:
    _, results, _ = run
    for side in ("llama-server default", "llama-cpp-python"):
        r = results[("tiny-recurrent", "mid-edit", side)]
        assert _tokens(r, "mid edit") >= 0.9 * _tokens(r, "cold"), side
    ours = results[("tiny-recurrent", "mid-edit", "coderag-daemon")]
    assert _tokens(ours, "mid edit") < 0.8 * _tokens(ours, "cold")


def test_swa_full_lets_the_server_truncate(run) -> None:
    _, results, _ = run
    default = results[("tiny-swa", "mid-edit", "llama-server default")]
    best = results[("tiny-swa", "mid-edit", "llama-server best")]
    assert _tokens(best, "mid edit") < 0.75 * _tokens(default, "mid edit")


@pytest.mark.parametrize("model", MODELS)
def test_replay(run, model: str) -> None:
    _, results, _ = run
    ours = results[(model, "replay", "coderag-daemon")]
    server = results[(model, "replay", "llama-server default")]
    assert [q["label"] for q in ours["requests"]] == [q["label"] for q in server["requests"]]
    assert len(ours["requests"]) >= 10 and any(q["kind"] == "chat" for q in ours["requests"])
    assert _total(ours) < _total(server)


def test_plots(run) -> None:
    if not PLOTS:
        pytest.skip("matplotlib is not installed (it comes with the bench extra)")
    _, _, out = run
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        f"{w}-{m}.png" for m in MODELS for w in ("mid-edit", "replay")
    )
