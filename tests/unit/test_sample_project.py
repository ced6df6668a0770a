"""The demo/benchmark project in fixtures/sample_project: every file parses, its own
tests pass, and QUESTIONS.json points at the functions that answer each question."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample_project"
QUESTIONS = json.loads((SAMPLE / "QUESTIONS.json").read_text(encoding="utf-8"))["questions"]
TEXT_SUFFIXES = {".py", ".md", ".toml", ".js"}

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def sample_files(suffixes: set[str]) -> list[Path]:
    return sorted(p for p in SAMPLE.rglob("*") if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)


def find_definition(tree: ast.Module, qualname: str) -> Definition:
    """The function or class named by a dotted path such as ``WebhookNotifier.deliver``."""
    body: list[ast.stmt] = tree.body
    node = None
    for part in qualname.split("."):
        matches = [n for n in body if isinstance(n, Definition) and n.name == part]
        assert len(matches) == 1, f"{qualname}: {len(matches)} definitions of {part!r}"
        node = matches[0]
        body = node.body
    assert node is not None
    return node


def test_layout_and_size() -> None:
    python = {p.relative_to(SAMPLE).as_posix() for p in sample_files({".py"})}
    expected = {"api", "auth", "cli", "config", "models", "notifications", "scheduler", "storage", "__init__"}
    assert {f"tasktrack/{name}.py" for name in expected} <= python
    assert "tests/test_auth.py" in python
    for name in ("README.md", "pyproject.toml", "QUESTIONS.json"):
        assert (SAMPLE / name).is_file()
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in sample_files(TEXT_SUFFIXES))
    assert 1200 <= lines <= 1800, lines


@pytest.mark.parametrize("path", sample_files({".py"}), ids=lambda p: p.relative_to(SAMPLE).as_posix())
def test_python_file_parses(path: Path) -> None:
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_sample_tests_pass() -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        # no:asyncio: the daemon's venv has pytest-asyncio, which the sample does not use.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:asyncio", "tests"],
        cwd=SAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b\d+ passed\b", result.stdout), result.stdout


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: q["id"])
def test_question_lines_point_at_function(question: dict) -> None:
    source = (SAMPLE / question["file"]).read_text(encoding="utf-8")
    node = find_definition(ast.parse(source), question["function"])
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    assert question["lines"] == [start, node.end_lineno]

    lines = source.splitlines()
    first, last = question["lines"]
    name = question["function"].rsplit(".", 1)[-1]
    assert re.match(rf"\s*(async\s+)?def {re.escape(name)}\(", lines[first - 1]), lines[first - 1]
    body = "\n".join(lines[first - 1 : last])
    for keyword in question["keywords"]:
        assert keyword in body, f"{keyword!r} not in {question['function']}"


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: q["id"])
def test_answer_lives_in_one_file(question: dict) -> None:
    """The answering function is defined in the named file and nowhere else in the sample."""
    name = question["function"].rsplit(".", 1)[-1]
    defining = {
        p.relative_to(SAMPLE).as_posix()
        for p in sample_files({".py"})
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name
    }
    assert defining == {question["file"]}
