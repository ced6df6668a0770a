"""The index on disk: one file per workspace root in a cache directory, so that a restart reads
again only the files that changed. It holds each file's chunk ranges and term counts, not its
text, which stays in the file.

A file's entry is trusted while its size and modification time are unchanged; when only the time
changed (a checkout, a touch), a hash of its bytes decides, so unchanged content is never chunked or
tokenized again. The whole file is written under a temporary name and renamed over the old one, so a
crash leaves the previous version; anything unreadable (another format or tokenizer, a truncated
file, wrong types) is logged and that root is indexed from scratch.

The format is numpy's ``.npz`` without pickles (safe to read whatever is in the cache directory):
the term ids and counts of all chunks as flat arrays, which load in one read, and a zlib-compressed
JSON array with the vocabulary, the files and their chunks' ranges and titles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from platformdirs import user_cache_dir

from .chunking import Span

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where the daemon saves its indexes (override with CODERAG_INDEX_DIR)."""
    override = os.environ.get("CODERAG_INDEX_DIR")
    return Path(override) if override else Path(user_cache_dir("coderag-daemon")) / "index"


FORMAT = 2
"""Bump when the layout of the file or the meaning of what it holds changes."""


@dataclass(frozen=True)
class FileRecord:
    """What the index knows of one file: the chunk at ``spans[i]`` has the unique term ids (in the
    index's vocabulary) ``terms[offsets[i]:offsets[i + 1]]``, each occurring ``counts[...]`` times."""

    size: int
    mtime_ns: int | None
    """None when the text came from an editor buffer: the file on disk must be checked by hash."""
    digest: str
    spans: tuple[Span, ...]
    terms: np.ndarray
    counts: np.ndarray
    offsets: np.ndarray


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def store_path(cache_dir: Path, root: Path) -> Path:
    """Where the index of ``root`` is kept: named after the folder, made unique by its full path."""
    key = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return cache_dir / f"{root.name or 'root'}-{key}.npz"


def save(cache_dir: Path, root: Path, fingerprint: str, vocabulary: list[str], files: Mapping[str, FileRecord]) -> Path:
    """Write the records of ``root``'s files (keyed by path relative to it), atomically; term ids
    index ``vocabulary``."""
    meta = {
        "format": FORMAT, "fingerprint": fingerprint, "root": str(root), "vocabulary": vocabulary,
        "files": {rel: [r.size, r.mtime_ns, r.digest, r.spans] for rel, r in files.items()},
    }  # fmt: skip
    arrays = {
        "meta": np.frombuffer(
            zlib.compress(json.dumps(meta, separators=(",", ":")).encode("utf-8"), 1), dtype=np.uint8
        ),
        "terms": np.concatenate([np.zeros(0, dtype=np.int32), *(r.terms for r in files.values())]),
        "counts": np.concatenate([np.zeros(0, dtype=np.float32), *(r.counts for r in files.values())]),
        "chunks": np.fromiter((len(r.spans) for r in files.values()), dtype=np.int64, count=len(files)),
        "lengths": np.concatenate([np.zeros(0, dtype=np.int64), *(np.diff(r.offsets) for r in files.values())]),
    }
    target = store_path(cache_dir, root)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=target.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub takes the first keyword for allow_pickle
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load(
    cache_dir: Path, root: Path, fingerprint: str, term_ids: Callable[[Iterable[str]], np.ndarray]
) -> dict[str, FileRecord] | None:
    """The saved records of ``root`` with term ids translated by ``term_ids`` (saved vocabulary →
    the caller's ids), or None if there are none usable (logged unless there is simply no file)."""
    path = store_path(cache_dir, root)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(zlib.decompress(npz["meta"].tobytes()))
            terms, counts, chunks, lengths = npz["terms"], npz["counts"], npz["chunks"], npz["lengths"]
        if meta["format"] != FORMAT or meta["fingerprint"] != fingerprint or meta["root"] != str(root):
            logger.info(
                "saved index %s was made by another version or with other settings; indexing %s from scratch",
                path,
                root,
            )
            return None
        vocabulary = meta["vocabulary"]
        if len(terms) != len(counts) or len(terms) and not 0 <= int(terms.min()) <= int(terms.max()) < len(vocabulary):
            raise ValueError("term ids out of range")
        ids = term_ids(vocabulary)[terms]
        return _records(meta["files"], ids, counts, chunks, lengths)
    except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, zlib.error) as exc:
        logger.warning("saved index %s is unreadable (%s); indexing %s from scratch", path, exc, root)
        return None


def _records(
    files: dict, ids: np.ndarray, counts: np.ndarray, chunks: np.ndarray, lengths: np.ndarray
) -> dict[str, FileRecord]:
    """The records of ``files`` (as saved), whose chunks' postings follow each other in ``ids`` and
    ``counts``: ``chunks`` has each file's chunk count, ``lengths`` each chunk's posting count."""
    if len(chunks) != len(files) or int(chunks.sum()) != len(lengths) or int(lengths.sum()) != len(ids):
        raise ValueError("chunk and posting counts do not match")
    file_ends = np.cumsum(chunks).tolist()
    posting_offsets = np.cumsum([0, *lengths.tolist()], dtype=np.int64)
    records = {}
    for (rel, (size, mtime_ns, file_digest, spans)), first, last in zip(
        files.items(), [0, *file_ends], file_ends, strict=False
    ):
        if not (
            isinstance(rel, str)
            and isinstance(size, int)
            and (mtime_ns is None or isinstance(mtime_ns, int))
            and isinstance(file_digest, str)
            and len(spans) == last - first
        ):
            raise TypeError("bad file entry")
        start, end = posting_offsets[first], posting_offsets[last]
        records[rel] = FileRecord(
            size,
            mtime_ns,
            file_digest,
            tuple((int(a), int(b), str(t)) for a, b, t in spans),
            ids[start:end],
            counts[start:end],
            posting_offsets[first : last + 1] - start,
        )
    return records
