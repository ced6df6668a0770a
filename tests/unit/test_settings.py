"""The settings table against everything derived from it or kept beside it: Options, the flags, what
a change reloads, the option classes' defaults, docs/PROTOCOL.md and the editors' settings."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from coderag_daemon import settings
from coderag_daemon.cli import _add_settings
from coderag_daemon.engine import EngineOptions
from coderag_daemon.engine.options import MIB
from coderag_daemon.options import Options, Reload, check_setting, merge, reloads
from coderag_daemon.prompting.prompts import PromptOptions
from coderag_daemon.settings import SETTINGS
from coderag_daemon.workspace.admission import AdmissionOptions

ROOT = Path(__file__).resolve().parents[2]
EDITORS = ROOT / "editors"

# Settings an editor deliberately does not offer, with the reason (none today: both offer all).
VSCODE_LEFT_OUT: dict[str, str] = {}
EMACS_LEFT_OUT: dict[str, str] = {}
# package.json settings that only the extension reads.
VSCODE_OWN = {
    "daemon.command",
    "daemon.pythonPath",
    "inlineCompletions.enable",
    "inlineCompletions.trigger",
    "inlineCompletions.languages",
}


def _table_default(setting: settings.Setting) -> Any:
    return list(setting.default) if isinstance(setting.default, tuple) else setting.default


# --- the daemon's side ---------------------------------------------------------------------------


def test_options_defaults_are_the_tables() -> None:
    options = Options()
    assert {s.name: getattr(options, s.name) for s in SETTINGS} == {s.name: _table_default(s) for s in SETTINGS}
    assert Options().ignore_globs is not options.ignore_globs  # a fresh list each time


def test_every_accepted_name_reaches_its_setting() -> None:
    raw = {
        "modelPath": "a.gguf",
        "nCtx": 4096,
        "checkpointMemoryMib": 64,
        "maxFileKiB": 7,
        "max_chat_tokens": 9,
        "ignoreGlobs": ["*.log"],
    }
    options, errors = merge(Options(), raw)
    assert errors == []
    assert (
        options.model,
        options.n_ctx,
        options.checkpoint_memory_mib,
        options.max_file_kib,
        options.max_chat_tokens,
        options.ignore_globs,
    ) == ("a.gguf", 4096, 64, 7, 9, ["*.log"])
    assert merge(Options(), {"model_path": "b.gguf", "checkpointMemoryMiB": 1, "maxFileKib": 2})[0].model == "b.gguf"
    for s in SETTINGS:
        assert set(s.accepted_names) >= {s.name, s.camel_name, s.editor}


def test_bad_values_are_reported_and_the_old_value_kept() -> None:
    base = Options(n_ctx=4096)
    options, errors = merge(
        base,
        {
            "nCtx": "big",
            "maxCompletionTokens": 0,
            "threads": True,
            "noSuchSetting": 1,
            "ignoreGlobs": "*.log",
            "modelPath": " ",
        },
    )
    assert options == base
    assert errors == [
        "setting 'nCtx': must be a whole number, got 'big'; keeping 4096",
        "setting 'maxCompletionTokens': must be between 1 and 4096, got 0; keeping 64",
        "setting 'threads': must be a whole number, got True; keeping 0",
        "unknown setting 'noSuchSetting' ignored",
        "setting 'ignoreGlobs': must be a list of strings; keeping []",
        "setting 'modelPath': must be a file path or null; keeping None",
    ]
    assert str(check_setting("ignore_globs", ["a\\"])).startswith("not a valid gitignore pattern")
    assert merge(base, [1])[1] == ["settings must be an object, got list; keeping the current ones"]


def test_bounds_are_inclusive() -> None:
    for s in SETTINGS:
        if s.bounds is not None:
            low, high = s.bounds
            assert s.check(low) is None and s.check(high) is None and s.check(s.default) is None
            assert s.check(low - 1) and s.check(high + 1)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": "other.gguf"}, {Reload.ENGINE}),
        ({"n_ctx": 4096}, {Reload.ENGINE, Reload.PROJECT}),  # the file context's budget keeps room in n_ctx
        ({"threads": 1}, {Reload.ENGINE}),
        ({"checkpoint_interval": 64}, {Reload.ENGINE}),
        ({"checkpoint_memory_mib": 64}, {Reload.ENGINE}),
        ({"context_tokens": 1024}, {Reload.PROJECT}),
        ({"max_completion_tokens": 16}, {Reload.PROJECT}),
        ({"max_chat_tokens": 16}, {Reload.PROJECT}),
        ({"retrieval_tokens": 0}, {Reload.PROJECT}),
        ({"ignore_globs": ["*.log"]}, {Reload.ADMISSION, Reload.PROJECT}),
        ({"max_file_kib": 64}, {Reload.ADMISSION, Reload.PROJECT}),
        ({"preload_delay_ms": 0, "completion_time_budget_ms": 500, "completion_wait_tokens": 0}, set()),
        ({"threads": 0}, set()),  # the value it had
    ],
)
def test_what_a_change_reloads(change: dict[str, Any], expected: set[Reload]) -> None:
    assert reloads(Options(), Options(**change)) == expected


def test_flags_keep_their_names_and_check_values() -> None:
    parser = argparse.ArgumentParser()
    _add_settings(parser)
    flags = [a.option_strings[0] for a in parser._actions if a.dest != "help"]
    assert flags == [
        "--model",
        "--n-ctx",
        "--threads",
        "--checkpoint-interval",
        "--checkpoint-memory-mib",
        "--preload-delay-ms",
        "--context-tokens",
        "--max-completion-tokens",
        "--max-chat-tokens",
        "--completion-time-budget-ms",
        "--completion-wait-tokens",
        "--retrieval-tokens",
        "--completion-definition-tokens",
        "--ignore",
        "--max-file-kib",
        "--persist-cache",
        "--persist-interval-ms",
        "--persist-budget-mib",
        "--engine-url",
        "--engine-api-key",
        "--engine-slot",
    ]
    args = parser.parse_args(["--model", "m.gguf", "--threads", "2", "--ignore", "*.log", "--ignore", "out/"])
    assert Options(**{s.name: getattr(args, s.name) for s in SETTINGS}) == Options(
        model="m.gguf", threads=2, ignore_globs=["*.log", "out/"]
    )
    assert parser.parse_args([]).ignore_globs == [] and parser.parse_args([]).n_ctx == 12288
    for bad in (["--n-ctx", "5"], ["--n-ctx", "many"], ["--ignore", "a\\"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_the_option_classes_share_the_tables_defaults() -> None:
    engine = EngineOptions()
    assert (engine.n_ctx, engine.checkpoint_interval, engine.checkpoint_budget_bytes) == (
        Options().n_ctx,
        Options().checkpoint_interval,
        Options().checkpoint_memory_mib * MIB,
    )
    assert EngineOptions(n_threads=settings.default_of("threads")).n_threads == EngineOptions().n_threads
    assert AdmissionOptions().max_file_bytes == Options().max_file_kib * 1024
    assert AdmissionOptions().ignore_globs == Options().ignore_globs
    assert PromptOptions().retrieval_tokens == Options().retrieval_tokens


def test_protocol_md_has_the_current_table() -> None:
    document = settings.PROTOCOL.read_text(encoding="utf-8")
    assert settings.with_table(document) == document, "run: python -m coderag_daemon.settings --write"
    assert settings.markdown_table() in document


def test_the_table_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert settings.main([]) == 0
    assert capsys.readouterr().out == settings.markdown_table()


# --- VS Code -------------------------------------------------------------------------------------

_JSON_TYPE = {"int": "integer", "bool": "boolean", "path": "string", "globs": "array", "text": "string"}


def test_vscode_settings_match_the_table() -> None:
    package = json.loads((EDITORS / "vscode" / "package.json").read_text(encoding="utf-8"))
    properties = package["contributes"]["configuration"]["properties"]
    offered = {s.editor for s in SETTINGS} - set(VSCODE_LEFT_OUT)
    assert {name.removeprefix("coderag.") for name in properties} - VSCODE_OWN == offered
    for s in SETTINGS:
        if s.editor in VSCODE_LEFT_OUT:
            continue
        prop = properties[f"coderag.{s.editor}"]
        assert prop["type"] == _JSON_TYPE[s.kind], s.name
        if s.kind == "path":  # an empty path is not sent (settings.ts), so the daemon's null applies
            assert prop["default"] == "" and s.default is None
        else:
            assert prop["default"] == _table_default(s), s.name
        if s.kind == "globs":
            assert prop["items"] == {"type": "string"}
        if s.bounds is not None:
            assert (prop["minimum"], prop["maximum"]) == s.bounds, s.name


def test_vscode_sends_the_tables_settings() -> None:
    source = (EDITORS / "vscode" / "src" / "settings.ts").read_text(encoding="utf-8")
    listed = re.search(r"DAEMON_SETTINGS = \[(.*?)\]", source, re.S)
    assert listed is not None
    assert re.findall(r"'(\w+)'", listed.group(1)) == [s.editor for s in SETTINGS if s.editor not in VSCODE_LEFT_OUT]


# --- Emacs ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r'\s+|;[^\n]*|"(?:\\.|[^"\\])*"|[()\']|[^\s()\'"]+')


def _read_form(text: str) -> Any:
    """The first Emacs Lisp form of `text`, read as far as defcustom forms need: lists, strings,
    integers and other atoms as strings; a quote is dropped."""
    stack: list[list[Any]] = [[]]
    for token in _TOKEN.findall(text):
        if token.isspace() or token.startswith(";") or token == "'":
            continue
        if token == "(":
            stack.append([])
        elif token == ")":
            done = stack.pop()
            stack[-1].append(done)
        elif token.startswith('"'):
            stack[-1].append(re.sub(r"\\(\n|.)", lambda m: "" if m[1] == "\n" else m[1], token[1:-1]))
        else:
            stack[-1].append(int(token) if re.fullmatch(r"-?\d+", token) else token)
        if len(stack) == 1 and stack[0]:
            return stack[0][0]
    raise ValueError("unbalanced form")


def _emacs_settings_type() -> Any:
    """The :type of `coderag-daemon-settings`, the plist of daemon settings the Emacs package sends."""
    start = "(defcustom coderag-daemon-settings "
    texts = [
        text for path in sorted((EDITORS / "emacs").glob("*.el")) if start in (text := path.read_text(encoding="utf-8"))
    ]
    assert len(texts) == 1
    form = _read_form(texts[0][texts[0].index(start) :])
    return form[form.index(":type") + 1]


def _emacs_kind_and_default(widget: Any) -> tuple[str, Any]:
    """(kind, default) of a value widget: (integer :value N), (repeat string), (choice (const nil) file)."""
    match widget:
        case ["integer", ":value", int(default)]:
            return "int", default
        case ["boolean", ":value", "t" | "nil" as default]:
            return "bool", default == "t"
        case ["repeat", "string"]:
            return "globs", []
        case ["choice", ["const", *_, "nil"], "file"]:
            return "path", None
        case ["string", ":value", str(default)]:
            return "text", default
    raise AssertionError(f"unexpected value type {widget!r}")


def test_emacs_settings_match_the_table() -> None:
    plist = _emacs_settings_type()
    assert plist[0] == "plist"
    options = plist[plist.index(":options") + 1]
    offered = {}
    for key, widget in options:
        assert key[0] == "const" and key[-1].startswith(":")
        offered[key[-1].removeprefix(":")] = _emacs_kind_and_default(widget)
    assert list(offered) == [s.editor for s in SETTINGS if s.editor not in EMACS_LEFT_OUT]
    for s in SETTINGS:
        if s.editor not in EMACS_LEFT_OUT:
            assert offered[s.editor] == (s.kind, _table_default(s)), s.name


def test_the_emacs_reader_reads_what_it_must() -> None:
    assert _read_form('(defcustom x \'(a "b \\"c\\"" 12) ; note\n :type \'integer) (next)') == [
        "defcustom",
        "x",
        ["a", 'b "c"', 12],
        ":type",
        "integer",
    ]
