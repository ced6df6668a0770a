"""One saved cache state on disk: what the engine's payload needs around it to be trusted at the next start.

Layout: ``MAGIC``, the format number and the header's length (``_PREFIX``), the header (UTF-8 JSON: workspace,
roots, key, meta, created, payload length), the payload, and a BLAKE2b digest of everything before it. The header
can be read alone (listing is cheap); the digest is checked only when the payload is loaded.

Files are written under a temporary name unique to the process, fsynced and renamed over the target, and the
directory is fsynced, so a crash or a concurrent writer leaves either the old file or the new one, never a mix.
Payloads run to hundreds of megabytes: they are written and hashed in slices of the caller's buffer and read back
in one allocation. Nothing here follows a symbolic link: the file holds the user's source code, encoded.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import stat
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MAGIC = b"CRAGKVST"
FORMAT = 1
"""Bump when the layout changes; files of another format are left alone (another version may use them)."""

_PREFIX = struct.Struct("<8sII")  # magic, format, header length
DIGEST_SIZE = 32
CHUNK_BYTES = 8 << 20
"""Slice size for writing and hashing: bounded system calls, no copy of the payload."""
_MAX_HEADER = 256 << 20
TEMP_PREFIX, TEMP_SUFFIX = "tmp-", ".part"


class StateFileError(Exception):
    """A state file that cannot be used; the message says which and why in one line."""


class ForeignFormatError(StateFileError):
    """Written in another format (by another version of the daemon): not used, but not ours to remove."""


class StateReplacedError(StateFileError):
    """The file was replaced by a newer save since it was listed: intact, just not the state the caller chose."""


@dataclass(frozen=True)
class SavedState:
    """One complete state file, as its header describes it."""

    path: Path
    workspace: str
    key: dict[str, Any]
    meta: dict[str, Any]
    size: int
    created: float
    roots: tuple[str, ...] = ()
    """The workspace's sorted resolved roots (what ``workspace`` is a hash of)."""


def encode_header(
    workspace: str,
    roots: tuple[str, ...],
    key: dict[str, Any],
    meta: dict[str, Any],
    created: float,
    payload_length: int,
) -> bytes:
    """The bytes before the payload. Raises TypeError if key or meta is not JSON."""
    header = json.dumps(
        {
            "workspace": workspace,
            "roots": list(roots),
            "key": key,
            "meta": meta,
            "created": created,
            "payload_length": payload_length,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    return _PREFIX.pack(MAGIC, FORMAT, len(header)) + header


def write(directory: Path, name: str, head: bytes, payload: bytes) -> int:
    """Write ``head``, ``payload`` and their digest as ``directory/name``, atomically; returns the file size."""
    return atomic_write(directory, name, _with_digest((head, payload)))


def atomic_write(directory: Path, name: str, chunks: Iterable[bytes | memoryview]) -> int:
    """Write ``chunks`` to a new 0600 temporary file in ``directory``, fsync it, rename it to ``name`` and fsync the
    directory. On any error the temporary file is removed and the previous ``name``, if any, is untouched."""
    tmp = directory / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{TEMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    size = 0
    try:
        try:
            for chunk in chunks:
                size += _write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, directory / name)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # an unwritable directory: the caller reports the first error; stale files go on a later save
        raise
    fsync_directory(directory)
    return size


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_pid(name: str) -> int | None:
    """The pid in a temporary file's name, or None if ``name`` is not one of ours."""
    if not (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)):
        return None
    pid = name[len(TEMP_PREFIX) :].partition("-")[0]
    return int(pid) if pid.isdigit() else None


def read_header(path: Path) -> SavedState:
    """The state described by the header of ``path``, after checking that the file has exactly the announced size
    (a truncated or extended file is refused here, before anyone plans with it)."""
    with _open(path) as (f, size):
        return _read_header(f, size, path)[0]


def read_payload(state: SavedState) -> bytes:
    """The payload of ``state``, its digest verified over the whole file."""
    with _open(state.path) as (f, size):
        found, head, length = _read_header(f, size, state.path)
        if found != state:
            raise StateReplacedError(f"{state.path}: replaced by a newer save since it was listed")
        payload = f.read(length)
        digest = f.read(DIGEST_SIZE + 1)
    hasher = hashlib.blake2b(head, digest_size=DIGEST_SIZE)
    hasher.update(payload)
    if len(payload) != length or digest != hasher.digest():
        raise StateFileError(f"{state.path}: checksum mismatch (the file is damaged)")
    return payload


def _with_digest(parts: Iterable[bytes]) -> Iterator[memoryview | bytes]:
    hasher = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for part in parts:
        view = memoryview(part).cast("B")
        for start in range(0, view.nbytes, CHUNK_BYTES):
            chunk = view[start : start + CHUNK_BYTES]
            hasher.update(chunk)
            yield chunk
    yield hasher.digest()


def _write_all(fd: int, chunk: bytes | memoryview) -> int:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]
    return len(chunk)


@contextmanager
def _open(path: Path) -> Iterator[tuple[IO[bytes], int]]:
    """A regular file and its size, opened without following a symbolic link (nor blocking on a planted FIFO)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateFileError(f"{path}: a symbolic link, not followed") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StateFileError(f"{path}: not a regular file")
        yield f, info.st_size


def _read_header(f: IO[bytes], size: int, path: Path) -> tuple[SavedState, bytes, int]:
    """The state, the bytes before the payload (for the digest) and the payload's length."""
    prefix = f.read(_PREFIX.size)
    if len(prefix) < _PREFIX.size:
        raise StateFileError(f"{path}: too short to be a saved state ({size} bytes)")
    magic, version, header_length = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise StateFileError(f"{path}: not a saved cache state")
    if version != FORMAT:
        raise ForeignFormatError(f"{path}: format {version}; this version of the daemon reads format {FORMAT}")
    if header_length > min(_MAX_HEADER, size - _PREFIX.size - DIGEST_SIZE):
        raise StateFileError(f"{path}: truncated header")
    head = prefix + f.read(header_length)
    state, length = state_of(path, head, size)
    expected = len(head) + length + DIGEST_SIZE
    if size != expected:
        raise StateFileError(f"{path}: {size} bytes where the header announces {expected} (an incomplete file)")
    return state, head, length


def state_of(path: Path, head: bytes, size: int) -> tuple[SavedState, int]:
    """The state a file of ``size`` bytes starting with ``head`` (from encode_header) describes, and its payload
    length."""
    try:
        header = json.loads(head[_PREFIX.size :])
        workspace, roots, key, meta = header["workspace"], header["roots"], header["key"], header["meta"]
        created, length = header["created"], header["payload_length"]
        if not (
            isinstance(workspace, str)
            and isinstance(roots, list)
            and all(isinstance(r, str) for r in roots)
            and isinstance(key, dict)
            and isinstance(meta, dict)
            and isinstance(created, int | float)
            and isinstance(length, int)
            and length >= 0
        ):
            raise TypeError("wrong types")
    except (ValueError, KeyError, TypeError) as exc:
        raise StateFileError(f"{path}: unreadable header ({exc})") from None
    return SavedState(path, workspace, key, meta, size, float(created), tuple(roots)), length
