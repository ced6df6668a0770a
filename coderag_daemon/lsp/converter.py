"""How JSON-RPC messages become Python values: lsprotocol's types for LSP's methods, plain dicts
and lists for the daemon's own (pygls's default turns them into namedtuples, which every handler
and client then had to turn back). The daemon, its benchmarks and its tests' clients use it."""

from __future__ import annotations

from typing import Any

from cattrs import Converter
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage, default_converter


def _as_is(obj: dict[str, Any], cls: type) -> Any:
    return cls(**obj)


def plain_json_converter() -> Converter:
    """pygls's converter, with the params and results of unknown methods left as parsed JSON."""
    converter = default_converter()
    for message in (JsonRPCRequestMessage, JsonRPCNotification, JsonRPCResponseMessage):
        converter.register_structure_hook(message, _as_is)
    return converter
