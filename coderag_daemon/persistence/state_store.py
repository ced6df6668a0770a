"""Saved cache states per workspace, so that a restart loads the KV cache instead of decoding every file again.

A workspace is its sorted resolved roots; its states live in a subdirectory named after them (first root's name
and a hash), beside ``workspace.json``, which names the roots for people and whose modification time is the
workspace's last use. A state file is named by its key and its files' contents, so saving the same files again
replaces that generation while a branch switch adds one: the newest ``keep`` stay, so switching back finds its
state. Then the total size of all workspaces is held under a budget, least recently used workspace first.

Several daemons may share the directory. Each writes under its own temporary name and renames (last complete
write wins); none removes the file it just wrote, nor one newer than it (a concurrent save's: that save prunes
for itself). A file that cannot be used is logged once and removed, unless it may serve someone else (another
key or format), in which case it is left for pruning. Symbolic links planted in the directory are never followed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

from platformdirs import user_cache_dir

from . import state_file
from .state_file import ForeignFormatError, SavedState, StateFileError, StateReplacedError

logger = logging.getLogger(__name__)

STATE_SUFFIX = ".state"
WORKSPACE_FILE = "workspace.json"
STALE_TEMP_SECONDS = 60.0
"""A temporary file this old whose process is gone was left by a crash."""

_StateFiles = list[tuple[Path, int, int]]
"""(path, size, mtime_ns) of state files (named here: StateStore.list hides the builtin in the class)."""

_noted: set[tuple[str, str]] = set()
"""(path, reason) already logged by this process, for files that are kept."""


class PersistenceUnavailable(OSError):
    """Saving is impossible here (full disk, read-only or unwritable directory): go on without saved states."""


def default_state_dir() -> Path:
    """Where saved states live, beside the workspace index (override with CODERAG_STATE_DIR)."""
    override = os.environ.get("CODERAG_STATE_DIR")
    return Path(override) if override else Path(user_cache_dir("coderag-daemon")) / "states"


def workspace_roots(roots: Sequence[Path | str]) -> tuple[str, ...]:
    """What identifies a workspace: its distinct resolved roots, sorted."""
    return tuple(sorted({str(Path(root).resolve()) for root in roots}))


def workspace_id(roots: tuple[str, ...]) -> str:
    """The directory name of a workspace: readable (its first root's name), unique (a hash of all roots)."""
    digest = hashlib.sha256("\0".join(roots).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(roots[0]).name)[:40] if roots else ""
    return f"{name or 'workspace'}-{digest}"


def generation_name(key: dict[str, Any], meta: dict[str, Any]) -> str:
    """A state's file name: equal for the same key and the same files with the same contents, in any order."""
    files = sorted(json.dumps(entry) for entry in meta.get("files", []))
    key_hash = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=4).hexdigest()
    files_hash = hashlib.blake2b("\n".join(files).encode(), digest_size=8).hexdigest()
    return f"{key_hash}-{files_hash}{STATE_SUFFIX}"


class StateStore:
    """The saved cache states of all workspaces, in one directory."""

    def __init__(self, directory: Path | None = None, budget_bytes: int = 2 << 30, keep: int = 3) -> None:
        self.directory = directory if directory is not None else default_state_dir()
        self.budget_bytes = budget_bytes
        self.keep = max(1, keep)

    def save(self, roots: Sequence[Path], key: dict[str, Any], meta: dict[str, Any], payload: bytes) -> SavedState:
        """Write a state of the workspace ``roots``, then prune its old generations and all workspaces to the
        budget. Raises PersistenceUnavailable when the directory cannot take it (nothing else is changed then)."""
        ws_roots = workspace_roots(roots)
        ws = workspace_id(ws_roots)
        head = state_file.encode_header(ws, ws_roots, key, meta, time.time(), memoryview(payload).nbytes)
        name = generation_name(key, meta)
        try:
            try:
                ws_dir = self._workspace_dir(ws, ws_roots)
                size = state_file.write(ws_dir, name, head, payload)
            except FileNotFoundError:  # the directory went away meanwhile (`cache clear`, another daemon's pruning)
                ws_dir = self._workspace_dir(ws, ws_roots)
                size = state_file.write(ws_dir, name, head, payload)
        except OSError as exc:
            raise PersistenceUnavailable(
                f"cannot save cache states in {self.directory}: {exc.strerror or exc}"
            ) from exc
        path = ws_dir / name
        try:
            self._prune(ws_dir, path)
            self._enforce_budget(path)
        except OSError as exc:  # the state is saved; pruning is tried again on the next save
            logger.warning("cannot prune saved cache states in %s: %s", self.directory, exc)
        return state_file.state_of(path, head, size)[0]

    def candidates(self, roots: Sequence[Path], key: dict[str, Any]) -> list[SavedState]:
        """The usable states of the workspace ``roots`` saved with ``key``, newest first."""
        ws = workspace_id(workspace_roots(roots))
        ws_dir = self._existing_dir(self.directory / ws)
        if ws_dir is None:
            return []
        with suppress(OSError):
            os.utime(ws_dir / WORKSPACE_FILE, follow_symlinks=False)
        wanted = json.loads(json.dumps(key))
        found = []
        for state in self._read_states(ws_dir):
            if state.key == wanted:
                found.append(state)
            else:
                _log_once(
                    state.path, f"{state.path}: saved with another model or other settings; not used", logging.INFO
                )
        return sorted(found, key=lambda s: s.created, reverse=True)

    def load(self, state: SavedState) -> bytes:
        """The payload of ``state``, verified. Raises StateFileError (and removes the file if it is damaged)."""
        try:
            return state_file.read_payload(state)
        except StateReplacedError as exc:
            logger.info("saved cache state %s", exc)
            raise
        except StateFileError as exc:
            _discard(state.path, exc)
            raise
        except FileNotFoundError:
            raise StateFileError(f"{state.path}: removed since it was listed") from None
        except OSError as exc:
            logger.warning("saved cache state %s is unreadable: %s", state.path, exc.strerror or exc)
            raise StateFileError(f"{state.path}: unreadable ({exc.strerror or exc})") from exc

    def list(self) -> list[SavedState]:
        """The usable states of all workspaces, by workspace, newest first."""
        states = [state for ws_dir in self._workspace_dirs() for state in self._read_states(ws_dir)]
        return sorted(states, key=lambda s: (s.roots, -s.created))

    def clear(self, roots: Sequence[Path] | None = None) -> int:
        """Remove the states of the workspace ``roots``, or of all workspaces; returns how many were removed."""
        if roots is None:
            dirs = list(self._workspace_dirs())
        else:
            ws_dir = self._existing_dir(self.directory / workspace_id(workspace_roots(roots)))
            dirs = [ws_dir] if ws_dir else []
        removed = 0
        for ws_dir in dirs:
            removed += sum(_remove(path) for path, _, _ in self._state_files(ws_dir))
            self._remove_stale_temps(ws_dir)
            self._drop_if_empty(ws_dir)
        return removed

    # -- directories

    def _workspace_dir(self, ws: str, roots: tuple[str, ...]) -> Path:
        """The workspace's directory (0700), created with its ``workspace.json`` if need be, marked as used now."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / ws
        with suppress(FileExistsError):
            os.mkdir(path, 0o700)
        if self._existing_dir(path) is None:  # it was a planted link, now removed
            os.mkdir(path, 0o700)
        marker = path / WORKSPACE_FILE
        try:
            marker_is_file = stat.S_ISREG(os.lstat(marker).st_mode)
        except FileNotFoundError:
            marker_is_file = False
        if marker_is_file:
            os.utime(marker, follow_symlinks=False)
        else:
            state_file.atomic_write(path, WORKSPACE_FILE, [json.dumps({"roots": list(roots)}, indent=1).encode()])
        return path

    def _existing_dir(self, path: Path) -> Path | None:
        """``path`` if it is a real directory; a symbolic link in its place is refused, logged and removed."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(mode):
            return path
        if stat.S_ISLNK(mode):
            _discard(path, f"{path}: a symbolic link, not followed")
        else:
            _log_once(path, f"{path}: not a directory; left alone", logging.WARNING)
        return None

    def _workspace_dirs(self) -> Iterator[Path]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        except OSError as exc:
            _log_once(self.directory, f"{self.directory}: unreadable ({exc.strerror or exc})", logging.WARNING)
            return
        for name in names:
            if (ws_dir := self._existing_dir(self.directory / name)) is not None:
                yield ws_dir

    def _drop_if_empty(self, ws_dir: Path) -> None:
        """Remove the directory of a workspace without states (nor saves under way)."""
        with suppress(OSError):
            if any(name != WORKSPACE_FILE for name in os.listdir(ws_dir)):
                return
            (ws_dir / WORKSPACE_FILE).unlink(missing_ok=True)
            ws_dir.rmdir()

    @staticmethod
    def _last_used(ws_dir: Path) -> float:
        for path in (ws_dir / WORKSPACE_FILE, ws_dir):
            with suppress(OSError):
                return os.lstat(path).st_mtime
        return 0.0

    # -- state files

    def _state_files(self, ws_dir: Path) -> _StateFiles:
        """(path, size, mtime_ns) of the regular state files in ``ws_dir``; links and others are refused."""
        try:
            entries = [entry for entry in os.scandir(ws_dir) if entry.name.endswith(STATE_SUFFIX)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            _log_once(ws_dir, f"{ws_dir}: unreadable ({exc.strerror or exc})", logging.WARNING)
            return []
        files: _StateFiles = []
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                files.append((Path(entry.path), info.st_size, info.st_mtime_ns))
            else:
                kind = "a symbolic link, not followed" if stat.S_ISLNK(info.st_mode) else "not a regular file"
                _discard(Path(entry.path), f"{entry.path}: {kind}")
        return files

    def _read_states(self, ws_dir: Path) -> Iterator[SavedState]:
        """The header-valid states in ``ws_dir`` that belong there."""
        for path, _, _ in self._state_files(ws_dir):
            try:
                state = state_file.read_header(path)
            except ForeignFormatError as exc:
                _log_once(path, f"{exc}; not used", logging.INFO)
                continue
            except StateFileError as exc:
                _discard(path, exc)
                continue
            except FileNotFoundError:
                continue
            except OSError as exc:
                _log_once(path, f"{path}: unreadable ({exc.strerror or exc})", logging.WARNING)
                continue
            if state.workspace != ws_dir.name or workspace_id(state.roots) != ws_dir.name:
                _discard(path, f"{path}: belongs to another workspace ({', '.join(state.roots)})")
                continue
            yield state

    def _prune(self, ws_dir: Path, written: Path) -> None:
        """Keep the newest ``keep`` generations, ``written`` and anything newer (a concurrent save's)."""
        files = sorted(self._state_files(ws_dir), key=lambda f: f[2], reverse=True)
        own = next((mtime for path, _, mtime in files if path == written), None)
        if own is None:  # already replaced or removed by a concurrent save, which prunes for itself
            return
        for path, _, mtime in files[self.keep :]:
            if path != written and mtime <= own:
                _remove(path)

    def _enforce_budget(self, written: Path) -> None:
        """Remove the oldest generations of the least recently used workspaces until all fit in the budget; also
        remove the temporary files of writers that died."""
        workspaces = []
        for ws_dir in self._workspace_dirs():
            self._remove_stale_temps(ws_dir)
            workspaces.append((self._last_used(ws_dir), ws_dir, self._state_files(ws_dir)))
        total = sum(size for _, _, files in workspaces for _, size, _ in files)
        own = next((mtime for _, _, files in workspaces for path, _, mtime in files if path == written), None)
        if total <= self.budget_bytes or own is None:
            return
        for _, ws_dir, files in sorted(workspaces, key=lambda w: w[0]):
            for path, size, mtime in sorted(files, key=lambda f: f[2]):
                if total <= self.budget_bytes:
                    return
                if path != written and mtime <= own and _remove(path):
                    total -= size
                    logger.info("saved cache state %s removed to keep within %d bytes", path, self.budget_bytes)
            self._drop_if_empty(ws_dir)

    def _remove_stale_temps(self, ws_dir: Path) -> None:
        """Remove the temporary files of saves whose process died (older than a minute, pid gone)."""
        now = time.time()
        with suppress(OSError):  # an unreadable directory: its states are not read either
            for entry in os.scandir(ws_dir):
                pid = state_file.temp_pid(entry.name)
                if pid is None or _alive(pid):
                    continue
                with suppress(FileNotFoundError):
                    if now - entry.stat(follow_symlinks=False).st_mtime <= STALE_TEMP_SECONDS:
                        continue
                    if _remove(Path(entry.path)):
                        logger.info("removed %s, left by a daemon that stopped while saving", entry.path)


def _discard(path: Path, reason: StateFileError | str) -> None:
    """Log why ``path`` cannot be used and remove it (the link itself, for a link)."""
    error = _unlink(path)
    if error is None:
        logger.warning("saved cache state %s; removed", reason)
    else:
        _log_once(path, f"{reason}; cannot be removed ({error.strerror or error})", logging.WARNING)


def _unlink(path: Path) -> OSError | None:
    """Remove ``path``; the error if it stays (gone already is fine: a concurrent prune was first)."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        return exc
    return None


def _remove(path: Path) -> bool:
    """Remove a file that is no longer wanted; False (logged once) if it stays."""
    error = _unlink(path)
    if error is not None:
        _log_once(path, f"{path}: cannot be removed ({error.strerror or error})", logging.WARNING)
    return error is None


def _log_once(path: Path, message: str, level: int) -> None:
    """Log ``message`` about a file that stays, once per process."""
    if (str(path), message) not in _noted:
        _noted.add((str(path), message))
        logger.log(level, "saved cache state %s", message)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (another user's counts: it is not ours to judge)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True
