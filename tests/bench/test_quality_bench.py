"""`coderag-daemon bench quality`: the scoring functions, the cases cut from real lines, and a smoke
run on the tiny dense model whose figures are recomputed from the suggestions it recorded.

The smoke run needs llama-server in .build/ (the first run builds it, several minutes) and the
packages' wheels from PyPI (downloaded once).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from coderag_daemon.bench.quality_bench import Scored, figures, score
from coderag_daemon.bench.quality_cases import (
    CATEGORIES,
    Case,
    Hunk,
    Package,
    candidates,
    cuts,
    line_cases,
    package_workload,
    select,
)
from coderag_daemon.bench.quality_scoring import (
    accepted_chars,
    continues_word,
    edit_distance,
    exact_first_line,
    similarity,
)
from coderag_daemon.bench.workload import Complete, Edit, Editor

# --- scoring -------------------------------------------------------------------------------------


def test_exact_first_line() -> None:
    assert exact_first_line("return x  \n    y = 2", "return x\nz = 1")
    assert not exact_first_line("return x + 1", "return x")
    assert not exact_first_line("", "")  # no suggestion is never right
    assert not exact_first_line("return", "return x")


def test_accepted_chars_is_the_common_prefix() -> None:
    assert accepted_chars("return value or None", "return values") == len("return value")
    assert accepted_chars("x = 1\ny = 2\nz", "x = 1\ny = 3") == len("x = 1\ny = ")
    assert accepted_chars("abc", "abc") == 3
    assert accepted_chars("", "abc") == 0
    assert accepted_chars("b", "abc") == 0


def test_edit_distance_and_similarity() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == edit_distance("abc", "") == 3
    assert edit_distance("flaw", "lawn") == 2
    assert similarity("abcd", "abcd") == 1.0
    assert similarity("", "") == 1.0
    assert similarity("", "abcd") == 0.0
    assert similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)


def test_continues_word() -> None:
    assert continues_word("    ret", "urn x", "urn value")
    assert not continues_word("    ret", " x", "urn value")  # a new word where the author went on
    assert not continues_word("    ret", "", "urn value")
    assert not continues_word("    ret", "(x)", "urn value")  # no name goes on with a bracket
    assert continues_word("x = f(", "a, b)", "self)")
    assert not continues_word("x = f(", " a)", "self)")
    assert continues_word('s = "abc', " def", ' def"')  # the author's text goes on with a blank


# --- cases ---------------------------------------------------------------------------------------


def test_cuts_of_a_line() -> None:
    line = '        value = self._parse("key name", pos)'
    got = cuts(line)
    assert line[: got["after indentation"]] == "        val"
    assert line[: got["mid-identifier"]] == "        value = se"
    assert line[: got["after operator"]] == "        value = "
    assert line[: got["inside string"]] == '        value = self._parse("key '
    assert "line start" not in got
    assert cuts("import os") == {"line start": 3}
    assert cuts("    # a comment") == {}


def test_line_cases_expected_text() -> None:
    lines = ["    if ok:", "        return first", "    return second"]
    block, *partial = line_cases("pkg", "m.py", 10, lines, 1)
    assert (block.category, block.typed, block.expected) == (
        "next block",
        "        ",
        "return first\n    return second",
    )
    assert block.block == "return first"
    assert {c.category for c in partial} == {"after indentation", "mid-identifier"}
    for case in partial:  # what is typed and what is expected give the author's text again
        assert case.typed + case.expected == "\n".join(lines[1:])
    nxt = line_cases("pkg", "m.py", 11, lines, 2)[0]
    assert (nxt.category, nxt.expected, nxt.block) == ("next line", "return second", "")


def test_select_is_fixed_and_spread() -> None:
    cases = [Case("p", "m.py", i, category, "", "x", "") for i in range(40) for category in CATEGORIES]
    first, again = select(cases, 14, seed=3), select(cases, 14, seed=3)
    assert first == again and len(first) == 14
    assert {c.category for c in first} == set(CATEGORIES) and all(
        sum(c.category == k for c in first) == 2 for k in CATEGORIES
    )
    assert first == [c for c in cases if c in first]  # replay order
    assert select(cases, 14, seed=4) != first


def test_workload_replays_the_author_text() -> None:
    """Typing every hunk gives the newer text; each case's line is what the case typed at its ask."""
    old = {"m.py": "a = 1\nb = 2\nc = 3\n", "n.py": "x = 1\n"}
    new_text = "a = 1\nimport os\nvalue = os.getcwd()\nc = 3\n"
    hunk = Hunk("m.py", 1, 2, 1, ["import os", "value = os.getcwd()"])
    cases = candidates("p", [hunk])
    session = package_workload(Package("p", "1", "2"), [hunk], old, cases, len, 10_000)
    editor = Editor(session.workload.files)
    asked = iter(session.cases)
    for step in session.workload.steps:
        if isinstance(step, Edit):
            editor.apply(step)
        else:
            assert isinstance(step, Complete)
            case = next(asked)
            assert editor.lines[step.path][step.line] == case.typed and step.character == len(case.typed)
    assert editor.text("m.py") == new_text
    assert list(session.workload.files) == ["m.py", "n.py"]


def test_figures() -> None:
    case = Case("p", "m.py", 0, "mid-identifier", "    ret", "urn value\nx", "")
    good = score("s", case, "urn value", 1.0)
    bad = score("s", case, " None", 3.0)
    assert (good.exact, good.accepted, good.accepted_line, good.similarity, good.continues) == (True, 9, 9, 1.0, True)
    assert (bad.exact, bad.accepted, bad.accepted_line, bad.continues) == (False, 0, 0, False)
    on = score("s", case, "urn value\nxyz", 1.0)  # the author's next line begins as it goes on
    assert (on.accepted, on.accepted_line) == (11, 9)
    f = figures([good, bad, on])
    assert (f.cases, f.exact, f.accepted, f.accepted_line, f.continues, f.p50) == (3, 2 / 3, 20, 18, 2 / 3, 1.0)
    assert f.similarity == pytest.approx((2.0 + bad.similarity) / 3)
    block = Case("p", "m.py", 0, "next block", "    ", "a = 1\n    b = 2\nc", "a = 1\n    b = 2")
    assert score("s", block, "a = 1\n    b = 2\n", 1.0).similarity == 1.0
    assert score("s", block, "a = 1\n", 1.0).continues is None


# --- smoke run -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("quality") / "q.json"
    command = [sys.executable, "-m", "coderag_daemon", "bench", "quality", "--tiny", "--cases", "9"]
    proc = subprocess.run(
        [*command, "--threads", "1", "--sides", "ours,infill,ours-file,ours-defs", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_smoke_every_side_scores_the_same_cases(run) -> None:
    stdout, result = run
    rows = [Scored(**r) for r in result["cases"]]
    sides = list(dict.fromkeys(r.side for r in rows))
    assert sides == ["ours", "infill", "ours-file", "ours-defs"]
    keys = [[r.key for r in rows if r.side == s] for s in sides]
    assert len(keys[0]) == 9 and all(k == keys[0] for k in keys)
    assert {r.category for r in rows} == set(CATEGORIES)
    for line in ("| side | category | cases | exact first line", "Against infill", "Worst ", "latency does"):
        assert line in stdout
    assert "completionDefinition" not in stdout  # the daemon took the setting (it names one it rejects)


def test_smoke_figures_are_recomputed(run) -> None:
    _, result = run
    assert result["finished"] is True
    rows = [Scored(**r) for r in result["cases"]]
    for r in rows:
        case = Case("", "", 0, r.category, r.typed, r.expected, "")
        again = score(r.side, case, r.suggestion, r.seconds)
        assert (again.exact, again.accepted, again.accepted_line, again.continues) == (
            r.exact,
            r.accepted,
            r.accepted_line,
            r.continues,
        )
        assert r.seconds > 0
    for side, summary in result["summary"].items():
        mine = [r for r in rows if r.side == side]
        total = summary["all"]
        assert total["cases"] == len(mine)
        assert total["accepted"] == sum(r.accepted for r in mine)
        assert total["accepted_line"] == sum(r.accepted_line for r in mine)
        assert total["exact"] == pytest.approx(sum(r.exact for r in mine) / len(mine))
        assert math.isclose(total["similarity"], sum(r.similarity for r in mine) / len(mine))
