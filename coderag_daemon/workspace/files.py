"""Small file-system facts shared by the document store, the file order and the workspace index."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)


def read_capped(path: str, max_bytes: int | None) -> bytes | None:
    """A regular file's bytes, None if it cannot be read or has more than `max_bytes` bytes (it may
    have grown since its size was checked: never read past the cap). A FIFO or device is refused
    before it is opened, since reading it could block forever."""
    try:
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            data = f.read(-1 if max_bytes is None else max_bytes + 1)
    except OSError as exc:
        log.debug("cannot read %s: %s", path, exc)
        return None
    if max_bytes is not None and len(data) > max_bytes:
        log.info("skipping %s: too large (over %d bytes)", path, max_bytes)
        return None
    return data


def keys_under(keys: Iterable[str], path: str) -> list[str]:
    """The absolute-path keys that are `path` itself or lie below it (when it is a directory)."""
    prefix = os.path.join(path, "")
    return [k for k in keys if k == path or k.startswith(prefix)]


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, LSP's unit for a position's character."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2
