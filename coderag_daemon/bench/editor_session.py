"""A scripted editor session against the real daemon, over LSP on stdio, exactly as an editor talks
to it: open files of the sample project and ask for a completion while they are still being decoded,
edit a file in the middle of the context, ask for an inline completion, edit it again, ask a question
about the project. Prints what happened, with timings and
tokens reprocessed. This is the README's main job (`make demo`)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import BaseLanguageClient

from ..lsp.converter import plain_json_converter
from ..workspace.documents import path_to_uri

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample_project"
FILES = ["tasktrack/config.py", "tasktrack/auth.py", "tasktrack/scheduler.py", "tasktrack/notifications.py"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="GGUF model (default: the embedded default model)")
    parser.add_argument("--project", type=Path, default=SAMPLE, help="project to open (default: the sample project)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = the free cores")


class Session:
    def __init__(self) -> None:
        self.client = BaseLanguageClient("coderag-demo", "1", converter_factory=plain_json_converter)
        self.status: list[dict[str, Any]] = []
        self.deltas: list[str] = []
        self.client.feature("coderag/status")(lambda p: self.status.append(p))
        self.client.feature("coderag/chatDelta")(lambda p: self._delta(p))
        self.client.feature(types.WINDOW_SHOW_MESSAGE)(lambda p: print(f"  [daemon] {p.message}"))
        self.client.feature(types.WINDOW_LOG_MESSAGE)(lambda p: None)
        self.versions: dict[str, int] = {}

    def _delta(self, params: Any) -> None:
        text = params["delta"]
        self.deltas.append(text)
        print(text, end="", flush=True)

    async def wait_state(self, *states: str, after: int = 0, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for s in self.status[after:]:
                if s["state"] in states:
                    return s
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon never reached {states}")
            await asyncio.sleep(0.05)

    async def settle(self) -> None:
        """Wait until no preload is pending or running."""
        await asyncio.sleep(0.6)
        while self.status and self.status[-1]["state"] != "ready":
            await asyncio.sleep(0.05)

    def open(self, root: Path, rel: str) -> str:
        uri = path_to_uri(root / rel)
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=(root / rel).read_text()
                )
            )
        )
        return uri

    def type_text(self, uri: str, line: int, character: int, text: str) -> None:
        self.versions[uri] += 1
        pos = types.Position(line=line, character=character)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=types.Range(start=pos, end=pos), text=text)
                ],
            )
        )

    async def complete(self, uri: str, line: int, character: int) -> tuple[str, float, dict[str, Any]]:
        seq = self._seq()
        t0 = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            )
        )
        seconds = time.perf_counter() - t0
        figures = await self._request_after(seq)
        items = result.items if isinstance(result, types.InlineCompletionList) else result or []
        text = items[0].insert_text if items else ""
        return text if isinstance(text, str) else text.value, seconds, figures

    async def close(self) -> None:
        """shutdown and exit, as an editor ends a session; waits (at most a minute) for the daemon
        to save its cache and end."""
        await self.client.shutdown_async(None)
        self.client.exit(None)
        if self.client._server is not None:
            await asyncio.wait_for(self.client._server.wait(), 60)
        await self.client.stop()

    def _seq(self) -> int:
        return max((s["lastRequest"]["seq"] for s in self.status if "lastRequest" in s), default=0)

    async def _request_after(self, seq: int) -> dict[str, Any]:
        """The figures of the model call that answered, or {} if none did (type-through cache)."""
        for _ in range(25):
            if self._seq() > seq:
                return next(s["lastRequest"] for s in reversed(self.status) if "lastRequest" in s)
            await asyncio.sleep(0.02)
        return {}


def _line(label: str, seconds: float, figures: dict[str, Any]) -> str:
    if not figures:
        return f"  {label}: {seconds:.3f}s end to end | answered from the suggestion already shown, no model call"
    return (
        f"  {label}: {seconds:.2f}s end to end | {figures.get('tokensReprocessed', '?')} of "
        f"{figures.get('tokensInContext', '?')} tokens reprocessed ({figures.get('restoreKind', '?')}) | "
        f"prefill {figures.get('prefillMs', 0) / 1000:.2f}s, "
        f"first token {figures.get('timeToFirstTokenMs', 0) / 1000:.2f}s, "
        f"{figures.get('tokensGenerated', 0)} tokens generated in {figures.get('generationMs', 0) / 1000:.2f}s"
        + (
            f" | {figures['contextTokensLeftOut']} tokens of context left out (not decoded yet)"
            if figures.get("contextTokensLeftOut")
            else ""
        )
    )


async def _run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="coderag-demo-"))
    root = work / args.project.name
    shutil.copytree(args.project, root, ignore=shutil.ignore_patterns("QUESTIONS.json", "__pycache__"))
    s = Session()
    command = [sys.executable, "-m", "coderag_daemon", "--log-level", "WARNING", "--threads", str(args.threads)]
    if args.model:
        command += ["--model", args.model]
    await s.client.start_io(*command)
    try:
        print(f"Project: {root}")
        t0 = time.perf_counter()
        await s.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                workspace_folders=[types.WorkspaceFolder(uri=path_to_uri(root), name=root.name)],
            )
        )
        s.client.initialized(types.InitializedParams())
        ready = await s.wait_state("ready", "error")
        if ready["state"] == "error":
            print(f"The daemon could not load a model: {ready['error']}")
            return 1
        print(
            f"1. Model loaded in {time.perf_counter() - t0:.1f}s: {ready['model']} "
            f"(cache strategy {ready['strategy']}, n_ctx {ready['nCtx']})"
        )

        uris = [s.open(root, rel) for rel in FILES]
        context = await s.client.protocol.send_request_async("coderag/context", {})
        print(f"2. Opened {len(FILES)} files; context order (least recently edited first):")
        for f in context["files"]:
            print(f"     {f['path']:<32} {f['tokens']:>5} tokens")
        mid = FILES.index("tasktrack/auth.py")
        auth = uris[mid]
        lines = (root / FILES[mid]).read_text().split("\n")
        target = next(i for i, ln in enumerate(lines) if ln.startswith("def verify_token"))
        body = target + 1
        while not lines[body].strip().startswith(('"""', "'''")) and body < len(lines) - 1:
            body += 1
        insert_at = next(i for i in range(body + 1, len(lines)) if lines[i].strip().endswith('"""')) + 1
        print("3. The daemon decodes the open files in the background; a completion asked at once answers from")
        print("   what is decoded so far, leaving the rest of the context out of it:")
        _, seconds, figures = await s.complete(uris[-1], 5, 0)
        print(_line("completion in notifications.py", seconds, figures))
        t0 = time.perf_counter()
        await s.settle()
        print(
            f"   ...the background prefill of the whole context finished {time.perf_counter() - t0:.1f}s later "
            f"({s.status[-1].get('tokensCached')} tokens cached)"
        )

        print(f"4. Edit in the middle file ({FILES[mid]}, line {insert_at + 1}): it moves to the tail of the context")
        indent = " " * (len(lines[insert_at]) - len(lines[insert_at].lstrip()))
        s.type_text(auth, insert_at, 0, f'{indent}if not token:\n{indent}    raise InvalidToken("empty token")\n')
        await s.settle()
        print("   ...preload ran in the background after the edit settled; now the completion:")
        text, seconds, figures = await s.complete(auth, insert_at + 2, 0)
        print(_line("completion", seconds, figures))
        print(f"     suggestion: {text[:120]!r}")

        print("5. Second edit to the same file, completion at once (no preload): only its tail is reprocessed")
        s.type_text(auth, insert_at + 2, 0, f"{indent}# checked before decoding\n")
        text, seconds, figures = await s.complete(auth, insert_at + 3, 0)
        print(_line("completion", seconds, figures))
        print(f"     suggestion: {text[:120]!r}")

        question = "Where is the expiry of a signed token checked, and what happens when it has expired?"
        print(f"6. Question about the project: {question}\n   Answer (streamed): ", end="", flush=True)
        t0 = time.perf_counter()
        result = await s.client.protocol.send_request_async(
            "coderag/chat",
            {"question": question, "uri": auth, "position": {"line": target, "character": 0}, "token": "demo"},
        )
        seconds = time.perf_counter() - t0
        print()
        print(_line("chat", seconds, result["stats"]))
        print(
            "7. Back to completion after the chat (it ran on its own cached sequence): "
            "only the typed line is reprocessed"
        )
        s.type_text(auth, insert_at + 3, 0, f"{indent}return ")
        _, seconds, figures = await s.complete(auth, insert_at + 3, len(indent) + len("return "))
        print(_line("completion", seconds, figures))
        final = s.status[-1]
        print(
            f"Cache now: {final.get('tokensCached')} tokens, {final.get('checkpoints')} checkpoints "
            f"({final.get('checkpointBytes', 0) / 2**20:.1f} MiB)"
        )
        return 0
    finally:
        await s.close()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
