"""Which files may enter the context and the index.

Everything here errs on the side of leaving a file out: the context is small,
and a secret, a vendored tree or a generated file in it is worse than a
missing source file.
"""

from __future__ import annotations

import codecs
import fnmatch
import logging
import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pathspec import GitIgnoreSpec

from ..settings import default_of

logger = logging.getLogger(__name__)

SKIPPED_DIR_NAMES = frozenset(
    {
        ".git", ".hg", ".svn",
        ".venv", "venv", "node_modules", "__pycache__",
        "build", "dist", "target", "out",
        ".tox", ".mypy_cache", ".pytest_cache",
    }
)  # fmt: skip
SKIPPED_DIR_GLOBS = ("*.egg-info",)
SECRET_NAME_GLOBS = (
    ".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ed25519*", "id_ecdsa*", "id_dsa*",
    "*.p12", "*.pfx", "*.jks", "*.keystore",
    ".npmrc", ".pypirc", ".netrc", ".pgpass", ".htpasswd", "credentials*", "*secret*",
)  # fmt: skip
SECRET_NAME_REGEX = r"id_[^.]*\Z"
"""SSH key files under any name ssh-keygen suggests (``id_<anything>``, no extension); a
``.pub`` or a source file such as ``id_utils.py`` is not one."""
EDITOR_TEMP_GLOBS = (".#*", "#*#", "*~", ".*.sw?")
"""Lock, autosave, backup and swap files that editors write beside the files being edited."""

HEAD_BYTES = 8192
"""How much of a file is sniffed for binary content and private keys; a file whose
tail is not UTF-8 is caught later when the document store reads it."""

_PRIVATE_KEY = "-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
"""PEM, OpenSSH and PGP private keys: whatever the file is called (a deploy key, a cloud
service account's JSON), it must not reach the model."""
_PRIVATE_KEY_TEXT = re.compile(_PRIVATE_KEY)
_PRIVATE_KEY_BYTES = re.compile(_PRIVATE_KEY.encode())

MAX_LOGGED_SKIPS = 10_000


def is_gitignore(path: str | os.PathLike[str]) -> bool:
    """A ``.gitignore``: when one changes, which files are admitted may change with it."""
    return os.path.basename(path) == ".gitignore"


def _glob_regex(globs: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(fnmatch.translate(g) for g in globs), re.IGNORECASE)


_SKIPPED_DIR_RE = _glob_regex(SKIPPED_DIR_GLOBS)
_SECRET_RE = re.compile(f"{_glob_regex(SECRET_NAME_GLOBS).pattern}|{SECRET_NAME_REGEX}", re.IGNORECASE)
_EDITOR_TEMP_RE = _glob_regex(EDITOR_TEMP_GLOBS)


@dataclass
class AdmissionOptions:
    """User-tunable limits; the built-in rules (skipped directories, secrets) are not optional."""

    max_file_bytes: int = default_of("max_file_kib") * 1024
    ignore_globs: list[str] = field(default_factory=lambda: default_of("ignore_globs"))
    """Extra gitignore-style patterns, relative to each root; they only add ignores."""
    use_gitignore: bool = True
    max_walk_files: int = 20_000


@dataclass(frozen=True)
class Admission:
    """A decision and, for a refusal, why (for logs and for the user); truthy when admitted."""

    admitted: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.admitted


ADMITTED = Admission(True)


class AdmissionPolicy:
    """Decides whether a path may enter the context, and walks the admitted files of a root.

    ``check_location`` looks only at the path (usable for deleted files and
    directories); ``check_content`` only at the file's bytes; ``check`` does both.
    Safe to share between threads: the caches are guarded by a lock.
    """

    def __init__(self, roots: Iterable[str | os.PathLike[str]] = (), options: AdmissionOptions | None = None) -> None:
        self.options = options or AdmissionOptions()
        self._roots: tuple[Path, ...] = ()
        self._extra = GitIgnoreSpec.from_lines(self.options.ignore_globs) if self.options.ignore_globs else None
        self._specs: dict[Path, GitIgnoreSpec | None] = {}
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        for root in roots:
            self.add_root(root)

    @property
    def roots(self) -> tuple[Path, ...]:
        return self._roots

    def add_root(self, root: str | os.PathLike[str]) -> Path:
        """Add a workspace folder (resolved); returns it as stored."""
        path = Path(root).resolve()
        if path not in self._roots:
            self._roots = (*self._roots, path)
        return path

    def remove_root(self, root: str | os.PathLike[str]) -> None:
        path = Path(root).resolve()
        self._roots = tuple(r for r in self._roots if r != path)

    def check(self, path: str | os.PathLike[str]) -> Admission:
        """Whether an existing file may enter the context."""
        location = self.check_location(path)
        return self.check_content(path) if location else location

    def check_location(
        self, path: str | os.PathLike[str], *, is_dir: bool = False, follow_symlinks: bool = True
    ) -> Admission:
        """Path rules only: inside a root (after resolving symlinks), not skipped, not ignored, not secret.

        The rules apply to the resolved path and, when a symlink was involved and
        the path as given is also inside a root, to that path too. Without
        ``follow_symlinks`` they apply to the path as given only: whether the
        name is in view, wherever it points.
        """
        given = Path(os.path.abspath(path))
        candidates = [given]
        if follow_symlinks:
            try:
                real = given.resolve()
            except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop
                return self._refuse(given, f"unresolvable: {exc}")
            candidates = [real] if real == given else [real, given]
        for first, candidate in zip((True, False), candidates, strict=False):
            root = self.root_of(candidate)
            if root is None:
                if first:
                    return self._refuse(given, "outside the workspace roots")
                continue
            refusal = self._location_refusal(root, candidate.relative_to(root).parts, is_dir)
            if refusal is not None:
                return self._refuse(*refusal)
        return ADMITTED

    def check_content(self, path: str | os.PathLike[str]) -> Admission:
        """Content rules only: a regular file, not too large, no NUL byte, UTF-8 and no private key
        at least in its head."""
        try:
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                return self._refuse(path, "not a regular file")
            if st.st_size > self.options.max_file_bytes:
                return self._refuse(path, f"too large ({st.st_size} > {self.options.max_file_bytes} bytes)")
            with open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
        except OSError as exc:
            return self._refuse(path, f"unreadable: {exc.strerror or exc}")
        if b"\0" in head:
            return self._refuse(path, "binary (NUL byte)")
        try:  # a multi-byte character cut at the end of the head is fine
            codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
        except UnicodeDecodeError:
            return self._refuse(path, "not UTF-8")
        if _PRIVATE_KEY_BYTES.search(head):
            return self._refuse(path, "contains a private key")
        return ADMITTED

    def check_text(self, path: str | os.PathLike[str], text: str) -> Admission:
        """Content rules for text held in memory (an editor buffer, a file read): no NUL byte, no
        private key (both in the head, as on disk), not too large."""
        head = text[:HEAD_BYTES]
        if "\0" in head:
            return self._refuse(path, "binary (NUL byte)")
        if _PRIVATE_KEY_TEXT.search(head):
            return self._refuse(path, "contains a private key")
        if (
            len(text) > self.options.max_file_bytes
            or len(text.encode("utf-8", "surrogatepass")) > self.options.max_file_bytes
        ):
            return self._refuse(path, f"too large (over {self.options.max_file_bytes} bytes)")
        return ADMITTED

    def invalidate(self, path: str | os.PathLike[str]) -> None:
        """Forget cached ``.gitignore`` rules after ``path`` changed: a ``.gitignore``, or a moved/deleted directory."""
        given = Path(os.path.abspath(path))
        stale = {given, Path(os.path.realpath(given))}
        with self._lock:
            if is_gitignore(given):
                for p in stale:
                    self._specs.pop(p.parent, None)
            if any(p in self._specs for p in stale):  # a directory we read rules in: drop its subtree
                for d in [d for d in self._specs if any(d.is_relative_to(p) for p in stale)]:
                    del self._specs[d]

    def walk(self, root: str | os.PathLike[str]) -> Iterator[Path]:
        """Admitted files under ``root`` (a directory inside a workspace root), in a stable sorted order.

        Skipped directories are pruned without being listed; symlinked directories
        are not followed. Stops after ``options.max_walk_files`` files.
        """
        start = Path(root).resolve()
        base = self.root_of(start)
        if base is None or not self.check_location(start, is_dir=True):
            return
        count = 0
        stack = [start]
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                logger.warning("cannot list %s: %s", directory, exc)
                continue
            subdirs = []
            for entry in entries:
                path = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    if self._admit_entry(base, path, is_dir=True):
                        subdirs.append(path)
                    continue
                if entry.is_symlink():
                    admitted = self._refuse(path, "symlinked directory") if entry.is_dir() else self.check(path)
                else:
                    admitted = self._admit_entry(base, path, is_dir=False) and self.check_content(path)
                if not admitted:
                    continue
                if count == self.options.max_walk_files:
                    logger.warning("stopped listing %s after %d files (max_walk_files)", start, count)
                    return
                count += 1
                yield path
            stack.extend(reversed(subdirs))

    def _admit_entry(self, base: Path, path: Path, *, is_dir: bool) -> Admission:
        """Path rules for a walked entry whose ancestors were already admitted."""
        refusal = self._entry_refusal(base, path.relative_to(base).parts, is_dir)
        return ADMITTED if refusal is None else self._refuse(path, refusal)

    def root_of(self, path: str | os.PathLike[str]) -> Path | None:
        """The innermost root containing ``path``."""
        path = Path(path)
        inside = [r for r in self._roots if path.is_relative_to(r)]
        return max(inside, key=lambda r: len(r.parts), default=None)

    def display_path(self, path: str | os.PathLike[str]) -> str:
        """``path`` as the model and people read it: relative to its innermost root, under the
        root's name when there are several roots; as given outside the roots."""
        root = self.root_of(path)
        if root is None:
            return str(path)
        name = Path(path).relative_to(root).as_posix()
        return name if len(self._roots) == 1 else f"{root.name}/{name}"

    def _location_refusal(self, root: Path, parts: tuple[str, ...], is_dir: bool) -> tuple[Path, str] | None:
        """The first refused component of a path under ``root``, with the reason."""
        for depth in range(1, len(parts) + 1):
            entry_is_dir = is_dir or depth < len(parts)
            reason = self._entry_refusal(root, parts[:depth], entry_is_dir)
            if reason is not None:
                return root.joinpath(*parts[:depth]), reason
        return None

    def _entry_refusal(self, root: Path, parts: tuple[str, ...], is_dir: bool) -> str | None:
        """Why the last component of ``parts`` is refused, assuming its ancestors are admitted."""
        name = parts[-1]
        if is_dir:
            if name in SKIPPED_DIR_NAMES or _SKIPPED_DIR_RE.match(name):
                return "skipped directory"
            if root.joinpath(*parts, "pyvenv.cfg").exists():
                return "virtualenv"
        elif _SECRET_RE.match(name):
            return "secret-looking file name"
        elif _EDITOR_TEMP_RE.match(name):
            return "editor lock or backup file"
        relative = "/".join(parts) + ("/" if is_dir else "")
        if self.options.use_gitignore and self._gitignored(root, parts, relative):
            return "gitignored"
        if self._extra is not None and self._extra.match_file(relative):
            return "matches ignore_globs"
        return None

    def _gitignored(self, root: Path, parts: tuple[str, ...], relative: str) -> bool:
        """Git's rule: the deepest ``.gitignore`` with a matching pattern decides."""
        ignored = False
        prefix_len = 0
        for depth in range(len(parts)):
            spec = self._gitignore_in(root.joinpath(*parts[:depth]))
            if spec is not None:
                result = spec.check_file(relative[prefix_len:])
                if result.include is not None:
                    ignored = result.include
            prefix_len += len(parts[depth]) + 1
        return ignored

    def _gitignore_in(self, directory: Path) -> GitIgnoreSpec | None:
        with self._lock:
            if directory in self._specs:
                return self._specs[directory]
        try:
            lines = (directory / ".gitignore").read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:  # usually: there is none
            lines = []
        spec = GitIgnoreSpec.from_lines(lines) if lines else None
        with self._lock:
            self._specs[directory] = spec
        return spec

    def _refuse(self, path: str | os.PathLike[str], reason: str) -> Admission:
        """A refusal, logged the first time for this path and reason; at most MAX_LOGGED_SKIPS are remembered."""
        key = (os.fspath(path), reason)
        with self._lock:
            if key in self._logged or len(self._logged) > MAX_LOGGED_SKIPS:
                return Admission(False, reason)
            self._logged.add(key)
            full = len(self._logged) > MAX_LOGGED_SKIPS
        if full:
            logger.info("more than %d paths skipped; further skips are not logged", MAX_LOGGED_SKIPS)
        else:
            logger.info("skipping %s: %s", path, reason)
        return Admission(False, reason)
