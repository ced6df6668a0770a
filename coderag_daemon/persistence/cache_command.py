"""`coderag-daemon cache list|clear`: what the saved cache states hold and take, and a way to free the space."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .state_file import SavedState
from .state_store import StateStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="cache_action", required=True)
    actions.add_parser("list", help="one line per saved state (workspace, model, tokens, size, age) and the total")
    clear = actions.add_parser("clear", help="remove saved states (all of them, or one workspace's)")
    clear.add_argument(
        "--workspace",
        type=Path,
        metavar="PATH",
        help="only the states of workspaces with the folder PATH among their roots",
    )


def run(args: argparse.Namespace) -> int:
    store = StateStore()
    if args.cache_action == "list":
        print(format_list(store.list(), store.directory, time.time()))
    else:
        removed = clear(store, args.workspace)
        print(f"removed {removed} saved state{'s' if removed != 1 else ''} from {store.directory}")
    return 0


def clear(store: StateStore, folder: Path | None) -> int:
    """Remove all states, or those of every workspace with ``folder`` among its roots (a multi-root workspace is
    named by any of its folders)."""
    if folder is None:
        return store.clear()
    wanted = str(folder.resolve())
    workspaces = {state.roots for state in store.list() if wanted in state.roots}
    return sum(store.clear([Path(root) for root in roots]) for roots in workspaces | {(wanted,)})


def format_list(states: list[SavedState], directory: Path, now: float) -> str:
    lines = [
        f"{', '.join(s.roots)}  {model_label(s.key, s.meta)}  {_tokens(s.meta)} tokens  {_size(s.size)}  "
        f"{_age(now - s.created)}"
        for s in states
    ]
    total = sum(s.size for s in states)
    lines.append(f"{len(states)} saved state{'s' if len(states) != 1 else ''}, {_size(total)}, in {directory}")
    return "\n".join(lines)


def model_label(key: dict[str, Any], meta: dict[str, Any]) -> str:
    """The model a state was made with, as its key or the daemon's meta names it: a file name, or a short hash."""
    for source in (meta, key):
        for name in ("model", "model_name", "model_path"):
            if isinstance(source.get(name), str) and source[name]:
                return Path(source[name]).name
    for name, value in sorted(key.items()):
        if isinstance(value, str) and ("sha256" in name or "digest" in name):
            return f"model {value[:12]}"
    return "unknown model"


def _tokens(meta: dict[str, Any]) -> str:
    tokens = meta.get("tokens")
    return f"{tokens:,}" if isinstance(tokens, int) else "?"


def _size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def _age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{int(seconds // length)} {unit} ago"
    return "just now"
