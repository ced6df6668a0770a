"""Checks of the daemon's own methods' parameters, and the JSON-RPC errors they answer with."""

from __future__ import annotations

from typing import Any

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from ..workspace.documents import Document, DocumentError
from ..workspace.project import Project


class JsonRpcRequestFailed(JsonRpcException):
    """A request that could not be served (no model, a model error): JSON-RPC RequestFailed."""

    CODE = -32803
    MESSAGE = "Request failed"


def param(params: Any, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    """`params[name]` if it has type `kind`; None if absent and not required."""
    value = params.get(name) if isinstance(params, dict) else None
    if value is None:
        if required:
            raise JsonRpcInvalidParams(f"missing parameter {name!r}")
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise JsonRpcInvalidParams(f"parameter {name!r} has the wrong type ({type(value).__name__})")
    return value


def text(params: Any, name: str) -> str:
    """A required string parameter with something in it."""
    value: str = param(params, name, str)
    if not value.strip():
        raise JsonRpcInvalidParams(f"the {name} is empty")
    return value


def position(value: Any, name: str) -> tuple[int, int]:
    """An LSP position {line, character} as a (line, character) pair."""
    if not (
        isinstance(value, dict) and all(isinstance(value.get(k), int) and value[k] >= 0 for k in ("line", "character"))
    ):
        raise JsonRpcInvalidParams(f"parameter {name!r} must be {{line, character}} with non-negative numbers")
    return value["line"], value["character"]


def document(project: Project, uri: str, hint: str = "") -> Document:
    """The open document at `uri`; a client that asks about another one made a mistake."""
    doc = project.documents.get(uri)
    if doc is None:
        raise JsonRpcInvalidParams(f"unknown document {uri}{hint}")
    return doc


def offset(doc: Document, line: int, character: int) -> int:
    """The text offset of a position in `doc`, refused if the position is not in it."""
    try:
        return doc.offset_at((line, character))
    except DocumentError as exc:
        raise JsonRpcInvalidParams(str(exc)) from exc
