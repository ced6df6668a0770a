"""The index between runs: the saved records of each root read once, at the first build that lists
it, and the roots that changed written back (the file format is :mod:`.store`'s).

Both run on the index thread (saving also after it stopped), the only writer of the entries, so
they read the entries without their lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from . import identifiers, store
from .chunking import ChunkOptions
from .entries import IndexEntries
from .store import FileRecord

logger = logging.getLogger(__name__)


def fingerprint(chunking: ChunkOptions) -> str:
    """What the saved chunks and terms depend on; a saved index made with other values is not used."""
    basis = [store.FORMAT, asdict(chunking), identifiers.fingerprint()]
    return hashlib.sha256(json.dumps(basis).encode()).hexdigest()[:16]


class SavedIndex:
    """The saved index of each root in ``cache_dir`` (None: nothing is read or saved)."""

    def __init__(self, cache_dir: Path | None, chunking: ChunkOptions) -> None:
        self.cache_dir = cache_dir
        self._fingerprint = fingerprint(chunking)
        self._loaded_roots: set[Path] = set()

    def load(self, roots: Iterable[Path], entries: IndexEntries) -> dict[str, FileRecord]:
        """Saved records, by absolute path, of the roots whose saved index was not read yet; a root
        with none usable is marked changed, so that a fresh one is written even if nothing changes."""
        saved: dict[str, FileRecord] = {}
        if self.cache_dir is None:
            return saved
        for root in roots:
            if root in self._loaded_roots:
                continue
            self._loaded_roots.add(root)
            records = store.load(self.cache_dir, root, self._fingerprint, entries.term_ids)
            if records is None:
                entries.mark_dirty(root)
                continue
            for rel, record in records.items():
                saved[os.path.join(root, rel)] = record
        return saved

    def save(self, roots: Iterable[Path], entries: IndexEntries) -> None:
        """Write the saved index of each of ``roots`` that changed since it was last written."""
        if self.cache_dir is None:
            return
        for root in entries.take_dirty(roots):
            files = {os.path.relpath(key, root): e for key, e in entries.entries_of(root).items()}
            terms, counts, offsets = entries.postings([doc for e in files.values() for doc in e.docs])
            records = {}
            first = 0
            for rel, e in files.items():
                last = first + len(e.docs)
                a, b = offsets[first], offsets[last]
                records[rel] = FileRecord(
                    e.size, e.mtime_ns, e.digest, e.spans, terms[a:b], counts[a:b], offsets[first : last + 1] - a
                )
                first = last
            try:
                store.save(self.cache_dir, root, self._fingerprint, entries.vocabulary(), records)
            except OSError as exc:
                logger.warning("cannot save the workspace index of %s: %s", root, exc)
