"""Every daemon setting, declared once: name, type, default, bounds, help and what a change reloads.

The `Options` dataclass, the command line flags, the validation of editor-supplied values, what a
configuration change reloads and docs/PROTOCOL.md's settings table all come from `SETTINGS`; the
editors' settings are tested against it. A leaf module (it imports nothing from the package), so the
option classes of each area can take their defaults from it.

`python -m coderag_daemon.settings` prints the markdown table; `--write` puts it into docs/PROTOCOL.md.
"""

from __future__ import annotations

import enum
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pathspec import GitIgnoreSpec

Kind = Literal["int", "bool", "path", "globs", "text"]
"""The kinds of value: a bounded whole number, true or false, a file path (null: the default model),
a list of gitignore-style patterns, and a string in the form its setting's `text_check` accepts."""


class Reload(enum.Enum):
    """What has to be rebuilt when a setting changes."""

    ENGINE = "engine"
    """A new llama context: the model is loaded again."""
    PROJECT = "project"
    """The file context's budget and rules (the budget keeps room in n_ctx for a request and its answer)."""
    ADMISSION = "admission"
    """Which files may be read: the disk watcher and the workspace index follow."""


@dataclass(frozen=True)
class Setting:
    name: str
    """snake_case: the `Options` field, the flag (--n-ctx) and a name editors may use."""
    kind: Kind
    default: Any
    help: str
    bounds: tuple[int, int] | None = None
    """Inclusive limits of an "int", so that a typo cannot exhaust memory or stall the daemon."""
    reloads: frozenset[Reload] = frozenset()
    editor_name: str | None = None
    """The name editors show and send, when it is not the camelCase of `name`."""
    aliases: tuple[str, ...] = ()
    """Further names accepted for backward compatibility."""
    flag: str | None = None
    """The command line flag, when it is not --kebab-name."""
    text_check: Callable[[str], str | None] | None = None
    """Of a "text" setting: why a string is not acceptable, or None."""

    @property
    def camel_name(self) -> str:
        head, *rest = self.name.split("_")
        return head + "".join(part.capitalize() for part in rest)

    @property
    def editor(self) -> str:
        """The name of the protocol's settings table, package.json and the Emacs plist."""
        return self.editor_name or self.camel_name

    @property
    def accepted_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.name, self.camel_name, self.editor, *self.aliases)))

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> str | None:
        """Why `value` is not acceptable for this setting, or None."""
        if self.kind == "path":
            ok = value is None or (isinstance(value, str) and value.strip())
            return None if ok else "must be a file path or null"
        if self.kind == "globs":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                return "must be a list of strings"
            try:
                GitIgnoreSpec.from_lines(value)
            except (ValueError, re.error) as exc:  # pathspec's pattern errors are ValueErrors
                return f"not a valid gitignore pattern: {exc}"
            return None
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if self.kind == "text":
            if not isinstance(value, str):
                return f"must be a string, got {value!r}"
            return self.text_check(value) if self.text_check is not None else None
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be a whole number, got {value!r}"
        assert self.bounds is not None
        low, high = self.bounds
        return None if low <= value <= high else f"must be between {low} and {high}, got {value}"


def check_engine(value: str) -> str | None:
    """Why `value` is neither "local" nor an http(s) URL, or None."""
    parts = urlsplit(value)
    if value == "local" or (parts.scheme in ("http", "https") and parts.netloc):
        return None
    return f'must be "local" or an http(s):// URL of an engine server, got {value!r}'


def check_api_key_source(value: str) -> str | None:
    """Why `value` is not "env:NAME" or "file:PATH", or None."""
    kind, colon, where = value.partition(":")
    if kind not in ("env", "file") or not colon or not where.strip():
        return f'must be "env:NAME" or "file:PATH", got {value!r}'
    return None


_ENGINE = frozenset({Reload.ENGINE})
_PROJECT = frozenset({Reload.PROJECT})
_ADMISSION = frozenset({Reload.ADMISSION, Reload.PROJECT})

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model",
        "path",
        None,
        "A GGUF model file; without one (null), the embedded default model "
        "(Qwen2.5-Coder-0.5B-Instruct, installed with `coderag-daemon model install`).",
        reloads=_ENGINE,
        editor_name="modelPath",
        aliases=("model_path",),
    ),
    Setting(
        "n_ctx", "int", 12288, "Context window in tokens (files + request + answer).", (512, 131072), _ENGINE | _PROJECT
    ),
    Setting(
        "threads",
        "int",
        0,
        "CPU threads for the model; 0 = the cores other programs leave free, followed as that changes.",
        (0, 256),
        _ENGINE,
    ),
    Setting(
        "checkpoint_interval",
        "int",
        512,
        "Tokens between cache checkpoints (also taken at every file boundary).",
        (16, 65536),
        _ENGINE,
    ),
    Setting(
        "checkpoint_memory_mib",
        "int",
        512,
        "Memory for checkpoint data in MiB; beyond it, checkpoints are evicted keeping coverage spread.",
        (0, 65536),
        _ENGINE,
        editor_name="checkpointMemoryMiB",
    ),
    Setting(
        "preload_delay_ms",
        "int",
        400,
        "Quiet time after an edit (or files opened or changed on disk) before "
        "the cache is brought up to date in the background.",
        (0, 60000),
    ),
    Setting(
        "context_tokens",
        "int",
        9728,
        "Token budget of the file context; least recently used files leave first "
        "beyond it. It is capped so that n_ctx keeps room for a request and its answer (2,560 tokens with the "
        "default budgets: at n_ctx 8192 the file context gets at most 5632 tokens).",
        (256, 131072),
        _PROJECT,
    ),
    Setting("max_completion_tokens", "int", 64, "Longest inline completion, in tokens.", (1, 4096), _PROJECT),
    Setting("max_chat_tokens", "int", 512, "Longest chat answer, in tokens.", (1, 16384), _PROJECT),
    Setting(
        "completion_time_budget_ms",
        "int",
        3000,
        "An inline completion stops generating after this long and returns what it has.",
        (100, 60000),
    ),
    Setting(
        "completion_wait_tokens",
        "int",
        128,
        "Tokens of file context not cached yet that an inline completion "
        "decodes before its own request; the files beyond are left out of it and preloaded for the next one "
        "(after a cold start, an edit far up the context, a checkout). 131072 makes every completion wait for "
        "the whole context.",
        (0, 131072),
    ),
    Setting(
        "retrieval_tokens",
        "int",
        768,
        "Tokens of code retrieved from the workspace index into a chat request "
        "(after the cached context); 0 turns retrieval off.",
        (0, 16384),
        _PROJECT,
    ),
    Setting(
        "completion_definition_tokens",
        "int",
        0,
        "Tokens of definitions (signatures and first docstring lines) of the names used above the cursor, "
        "found in the workspace index outside the file context, put into an inline completion request "
        "(after the cached context); 0 turns them off.",
        (0, 4096),
    ),
    Setting(
        "ignore_globs",
        "globs",
        (),
        "Extra gitignore-style patterns of files that never enter the context.",
        reloads=_ADMISSION,
        flag="--ignore",
    ),
    Setting(
        "max_file_kib",
        "int",
        512,
        "Files larger than this many KiB are skipped.",
        (1, 65536),
        _ADMISSION,
        editor_name="maxFileKiB",
    ),
    Setting(
        "persist_cache",
        "bool",
        True,
        "Save the cache (its tokens, KV state and checkpoints) and the file order "
        "to disk, under the user cache directory (0600: it encodes the source code), so that the next start on "
        "this workspace is warm; false writes and reads nothing.",
    ),
    Setting(
        "persist_interval_ms",
        "int",
        60000,
        "Least time between two saves of the cache while the daemon runs "
        "(after a preload has settled; once more at shutdown).",
        (1000, 86400000),
    ),
    Setting(
        "persist_budget_mib",
        "int",
        2048,
        "Disk space for saved caches of all workspaces together, in MiB; "
        "beyond it the least recently used workspace's go first.",
        (64, 1048576),
        editor_name="persistBudgetMiB",
    ),
    Setting(
        "engine",
        "text",
        "local",
        '"local": the model runs in the daemon. A URL: the model runs in that server, llama-server '
        "(http(s)://host:port) or an OpenAI-compatible one (a URL ending in /v1); the model setting then names "
        "a local copy of the server's GGUF file, whose vocabulary lays out the prompts (docs/REMOTE.md). The "
        "daemon sends the files of its context to that server.",
        reloads=_ENGINE,
        flag="--engine-url",
        text_check=check_engine,
    ),
    Setting(
        "engine_api_key",
        "text",
        "env:CODERAG_ENGINE_API_KEY",
        'Where the remote engine\'s API key is: "env:NAME" (an environment variable; unset, no key is sent) '
        'or "file:PATH" (its first line). The key itself is never a setting and never logged.',
        reloads=_ENGINE,
        text_check=check_api_key_source,
    ),
    Setting(
        "engine_slot",
        "int",
        0,
        "The llama-server slot (id_slot) of this daemon: daemons sharing a server each take their own, so "
        "none evicts another's cached prefix (start the server with -np at least their number).",
        (0, 255),
        _ENGINE,
    ),
)
"""In the order of the flags, the protocol's table and the editors' settings. A list default is a
tuple here (immutable); `default_of` gives a fresh list."""

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_ACCEPTED_NAME: dict[str, Setting] = {n: s for s in SETTINGS for n in s.accepted_names}


def default_of(name: str) -> Any:
    """The default of setting `name`, a fresh list for a list setting."""
    default = BY_NAME[name].default
    return list(default) if isinstance(default, tuple) else default


def check_setting(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for setting `name` (snake_case), or None."""
    return BY_NAME[name].check(value)


# --- docs/PROTOCOL.md ----------------------------------------------------------------------------

PROTOCOL = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"
BEGIN = "<!-- settings table: generated by `python -m coderag_daemon.settings --write` -->"
END = "<!-- end of settings table -->"
_RELOAD_NOTE = {
    Reload.ENGINE: "Changing it reloads the model.",
    Reload.ADMISSION: "Changing it brings the disk watcher and the workspace index in line.",
}


def markdown_table() -> str:
    """The protocol's settings table: editor name (and the snake_case one where it is not the same
    words), flag, default, range, meaning."""
    rows = ["| setting | flag | default | range | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        name = f"`{s.editor}`" + (f" (`{s.name}`)" if s.editor.lower() != s.camel_name.lower() else "")
        default = f"`{json.dumps(list(s.default) if isinstance(s.default, tuple) else s.default)}`"
        bounds = f"{s.bounds[0]}–{s.bounds[1]}" if s.bounds else ""
        notes = " ".join(note for reload, note in _RELOAD_NOTE.items() if reload in s.reloads)
        meaning = " ".join(filter(None, (s.help, notes))).replace("|", "\\|")
        rows.append(f"| {name} | `{s.cli_flag}` | {default} | {bounds} | {meaning} |")
    return "\n".join(rows) + "\n"


def with_table(document: str) -> str:
    """`document` with the block between the marker comments replaced by the current table."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n\n" + markdown_table() + "\n" + document[end:]


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        PROTOCOL.write_text(with_table(PROTOCOL.read_text(encoding="utf-8")), encoding="utf-8")
    elif not argv:
        sys.stdout.write(markdown_table())
    else:
        sys.stderr.write("usage: python -m coderag_daemon.settings [--write]\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
