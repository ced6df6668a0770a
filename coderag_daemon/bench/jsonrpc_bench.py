"""JSON-RPC benchmark: microseconds to write and to read one message with json (pygls's own
`_send_data`, and json.loads as the message reader called it) and with orjson (the daemon's
`DaemonProtocol._send_data` and `framing.loads`), side by side in one run.

Messages: a 100 KB textDocument/didOpen (the daemon's own source as the text), a one-keystroke
textDocument/didChange, and a coderag/chatDelta notification (a chat answer streams one per token).
Writing goes through `notify` of a protocol built as the daemon builds its own (its protocol class and
converter), into a writer that keeps the bytes; reading parses those bytes. Both libraries' messages
are checked to hold the same JSON before anything is timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCProtocol

from ..lsp import methods
from ..lsp.converter import plain_json_converter
from ..lsp.framing import loads
from ..lsp.protocol import DaemonProtocol
from . import quiet

PACKAGE = Path(__file__).resolve().parents[1]
DOCUMENT_CHARS = 100_000
URI = "file:///project/coderag_daemon/big.py"


class _JsonProtocol(DaemonProtocol):
    """The daemon's protocol as it wrote before orjson: pygls's `_send_data` (json.dumps)."""

    _send_data = JsonRPCProtocol._send_data


class _Sink:
    """A writer that keeps the last message written."""

    def __init__(self) -> None:
        self.last = b""

    def write(self, data: bytes) -> None:
        self.last = data

    def close(self) -> None:
        pass


def _protocol(cls: type[DaemonProtocol]) -> tuple[DaemonProtocol, _Sink]:
    server = LanguageServer("coderag-daemon", "bench", protocol_cls=cls, converter_factory=plain_json_converter)
    protocol = server.protocol
    assert isinstance(protocol, DaemonProtocol)
    sink = _Sink()
    protocol.set_writer(sink)
    return protocol, sink


def _messages() -> list[tuple[str, str, Any]]:
    """(label, method, params) of each message timed."""
    source = "".join(p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py")))
    text = (source * (DOCUMENT_CHARS // max(len(source), 1) + 1))[:DOCUMENT_CHARS]
    did_open = types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=URI, language_id="python", version=1, text=text)
    )
    here = types.Position(line=120, character=17)
    did_change = types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
        content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=here, end=here), text="x")],
    )
    delta = {"token": "chat-1", "delta": " the"}
    return [
        ("didOpen, 100 KB", types.TEXT_DOCUMENT_DID_OPEN, did_open),
        ("didChange, 1 char", types.TEXT_DOCUMENT_DID_CHANGE, did_change),
        ("chatDelta", methods.CHAT_DELTA, delta),
    ]


def _body(framed: bytes) -> bytes:
    return framed.split(b"\r\n\r\n", 1)[1]


def _best_us(fns: tuple[Callable[[], Any], ...], seconds: float, repeats: int = 5) -> list[float]:
    """Microseconds per call of each function: the fastest of `repeats` runs, the functions' runs taking
    turns so that a busy moment of the machine slows them all."""
    timers = [timeit.Timer(fn) for fn in fns]
    numbers = []
    for timer in timers:
        number, took = timer.autorange()
        numbers.append(max(1, int(number * seconds / len(fns) / repeats / max(took, 1e-9))))
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, (timer, number) in enumerate(zip(timers, numbers, strict=True)):
            best[k] = min(best[k], timer.timeit(number) / number * 1e6)
    return best


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds",
        type=float,
        default=1.0,
        help="time spent on each row, the best of 5 runs reported (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    quiet.report()
    before, before_out = _protocol(_JsonProtocol)
    after, after_out = _protocol(DaemonProtocol)
    print(f"{'message':<18} {'bytes':>7}  {'direction':<9} {'json µs':>9} {'orjson µs':>10} {'speedup':>8}")
    for label, method, params in _messages():
        before.notify(method, params)
        after.notify(method, params)
        body = _body(after_out.last)
        if json.loads(_body(before_out.last)) != json.loads(body):
            print(f"{label}: json and orjson wrote different messages", file=sys.stderr)
            return 1
        rows = [
            ("write", partial(before.notify, method, params), partial(after.notify, method, params)),
            ("read", partial(json.loads, body), partial(loads, body)),
        ]
        for direction, with_json, with_orjson in rows:
            json_us, orjson_us = _best_us((with_json, with_orjson), args.seconds)
            print(
                f"{label:<18} {len(body):>7}  {direction:<9} {json_us:>9.1f} {orjson_us:>10.1f} "
                f"{json_us / orjson_us:>7.1f}x",
                flush=True,
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
