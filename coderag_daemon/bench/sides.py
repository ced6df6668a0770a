"""The compared sides, each replaying a `Workload` the way its users drive it.

- `DaemonSide`: coderag-daemon over LSP on stdio, exactly as an editor talks to it.
- `RemoteDaemonSide`: the same, with llama-server as its engine (`--engine-url`).
- `ServerSide`: llama-server, one slot, `cache_prompt`, requests shaped as llama.vscode shapes them
  (`/infill` with the other files as `input_extra`; models without FIM tokens get the same files in
  the same order as a token prompt on `/completion`; chat on `/v1/chat/completions`).
- `LlamaCppPythonSide`: llama-cpp-python's `Llama` with its own prefix reuse, fed the same files in
  the same fixed order in the model's FIM layout.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types

from ..engine import Model
from ..prompting.prompts import PromptLayout, PromptOptions, detect_layout
from ..workspace.documents import path_to_uri
from .editor_session import Session
from .llama_server import LlamaServer, ServerSettings, peak_rss
from .workload import Chat, Complete, Edit, Editor, Workload, chat_messages, fixed_order_request


@dataclass(frozen=True)
class RunOptions:
    n_ctx: int
    context_tokens: int
    threads: int
    completion_tokens: int
    chat_tokens: int


@dataclass
class Request:
    label: str
    kind: str
    tokens: int
    """Prompt tokens processed (evaluated) to answer it."""
    seconds: float
    generated: int
    text: str


@dataclass
class SideResult:
    side: str
    model: str
    workload: str
    requests: list[Request] = field(default_factory=list)
    background_tokens: int = 0
    background_seconds: float = 0.0
    peak_rss: int = 0
    checkpoint_bytes: int = 0
    exact: bool | None = None
    """A mid-context edit's completion equals the one computed from an empty cache."""

    @property
    def total_tokens(self) -> int:
        return sum(r.tokens for r in self.requests) + self.background_tokens

    def latency(self, q: float, kind: str = "complete") -> float:
        values = sorted(r.seconds for r in self.requests if r.kind == kind)
        if not values:
            return float("nan")
        return (
            statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] if len(values) > 1 else values[0]
        )


class DaemonSide:
    name = "coderag-daemon"

    def __init__(self, model: Path, options: RunOptions) -> None:
        self.model, self.options = model, options
        self.session = Session()
        self.work = Path(tempfile.mkdtemp(prefix="coderag-compare-"))
        self.uris: dict[str, str] = {}
        self.flags: tuple[str, ...] = ()
        """More of the daemon's flags."""

    async def start(self, workload: Workload) -> None:
        workload.write(self.work)
        o = self.options
        # every completion waits for the whole context, as every other side's prompt holds it
        await self.session.client.start_io(
            sys.executable,
            "-m",
            "coderag_daemon",
            "--model",
            str(self.model),
            "--threads",
            str(o.threads),
            "--n-ctx",
            str(o.n_ctx),
            "--context-tokens",
            str(o.context_tokens),
            "--log-level",
            "WARNING",
            "--max-completion-tokens",
            str(o.completion_tokens),
            "--max-chat-tokens",
            str(o.chat_tokens),
            "--completion-wait-tokens",
            "131072",
            *self.flags,
        )
        await self.session.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                workspace_folders=[types.WorkspaceFolder(uri=path_to_uri(self.work), name=self.work.name)],
            )
        )
        self.session.client.initialized(types.InitializedParams())
        ready = await self.session.wait_state("ready", "error")
        if ready["state"] == "error":
            raise RuntimeError(f"the daemon could not load {self.model}: {ready['error']}")
        for rel in workload.files:
            self.uris[rel] = self.session.open(self.work, rel)

    async def edit(self, step: Edit) -> None:
        s, uri = self.session, self.uris[step.path]
        s.versions[uri] += 1
        s.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=s.versions[uri]),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(
                            start=types.Position(line=step.line, character=0),
                            end=types.Position(line=step.end_line, character=0),
                        ),
                        text=step.text,
                    )
                ],
            )
        )

    async def complete(self, step: Complete, label: str) -> Request:
        text, seconds, figures = await self.session.complete(self.uris[step.path], step.line, step.character)
        return Request(
            label, "complete", figures.get("tokensReprocessed", 0), seconds, figures.get("tokensGenerated", 0), text
        )

    async def chat(self, step: Chat, label: str) -> Request:
        t0 = time.perf_counter()
        result = await self.session.client.protocol.send_request_async(
            "coderag/chat",
            {"question": step.question, "uri": self.uris[step.path], "position": {"line": step.line, "character": 0}},
        )
        stats = result["stats"]
        return Request(
            label,
            "chat",
            stats["tokensReprocessed"],
            time.perf_counter() - t0,
            stats["tokensGenerated"],
            result["answer"],
        )

    async def from_scratch(self, step: Complete) -> str:
        """The same completion with the cache dropped first: the reference for exactness."""
        await self.session.client.protocol.send_request_async("coderag/clearCache", {})
        text, _, _ = await self.session.complete(self.uris[step.path], step.line, step.character)
        return text

    async def finish(self, result: SideResult) -> None:
        s = self.session
        await s.settle()
        updates: dict[int, tuple[str, dict[str, Any]]] = {}
        for st in s.status:
            if "last" in st:
                updates.setdefault(st["last"]["seq"], (st["state"], st["last"]))
        background = [u for state, u in updates.values() if state == "preloading"]
        result.background_tokens = sum(u["tokensReprocessed"] for u in background)
        result.background_seconds = sum(u["prefillMs"] for u in background) / 1000
        result.checkpoint_bytes = max((st.get("checkpointBytes", 0) for st in s.status), default=0)
        assert s.client._server is not None  # the daemon process pygls started
        result.peak_rss = peak_rss(s.client._server.pid)
        await s.close()
        shutil.rmtree(self.work, ignore_errors=True)


class RemoteDaemonSide(DaemonSide):
    """coderag-daemon whose engine is llama-server (the same build and flags as the llama.vscode-shaped
    side beside it): the daemon's context order and preloading, the server's prefix cache. Its
    figures are the server's `timings`; its memory, the daemon's and the server's peaks together."""

    name = "coderag-daemon over llama-server"

    def __init__(self, binary: Path, model: Path, options: RunOptions, settings: ServerSettings, log: Path) -> None:
        super().__init__(model, options)
        self.binary, self.settings, self.log = binary, settings, log
        self.server: LlamaServer | None = None

    async def start(self, workload: Workload) -> None:
        o = self.options
        self.server = await asyncio.to_thread(
            LlamaServer, self.binary, self.model, o.n_ctx, o.threads, self.settings, self.log
        )
        self.flags = ("--engine-url", self.server.url)
        await super().start(workload)

    async def finish(self, result: SideResult) -> None:
        try:
            await super().finish(result)
        finally:
            assert self.server is not None
            result.peak_rss += self.server.peak_rss()
            result.checkpoint_bytes = self.server.checkpoint_bytes()
            self.server.close()


class _FixedOrderClient:
    """What the llama.vscode-style sides share: their own copy of the documents and the layout."""

    def __init__(self, layout: PromptLayout, options: RunOptions) -> None:
        self.layout, self.options = layout, options
        self.editor: Editor | None = None

    def _prompt_tokens(self, step: Complete) -> list[int]:
        """The fixed-order prompt in the model's own layout: other files whole, then the request."""
        assert self.editor is not None
        req = fixed_order_request(self.editor, step)
        tokens = list(self.layout.head("project"))
        for rel, text in req.extra:
            tokens += self.layout.file_segment(rel, text)
        return tokens + self.layout.completion_tail(step.path, req.prefix + req.prompt, req.suffix)

    async def edit(self, step: Edit) -> None:
        assert self.editor is not None
        self.editor.apply(step)


class ServerSide(_FixedOrderClient):
    def __init__(
        self, binary: Path, model: Path, layout: PromptLayout, options: RunOptions, settings: ServerSettings, log: Path
    ) -> None:
        super().__init__(layout, options)
        self.name = settings.label
        self.binary, self.model, self.settings, self.log = binary, model, settings, log
        self.server: LlamaServer | None = None

    async def start(self, workload: Workload) -> None:
        self.editor = Editor(workload.files)
        self.server = await asyncio.to_thread(
            LlamaServer, self.binary, self.model, self.options.n_ctx, self.options.threads, self.settings, self.log
        )

    async def complete(self, step: Complete, label: str) -> Request:
        assert self.editor is not None and self.server is not None
        body: dict[str, Any] = {"n_predict": self.options.completion_tokens, "cache_prompt": True, "temperature": 0.0}
        if self.layout.family == "plain":
            path, body["prompt"] = "/completion", self._prompt_tokens(step)
        else:
            path = "/infill"
            body.update(fixed_order_request(self.editor, step).as_infill())
        t0 = time.perf_counter()
        out = await asyncio.to_thread(self.server.post, path, body)
        seconds = time.perf_counter() - t0
        return Request(
            label, "complete", out["timings"]["prompt_n"], seconds, out["timings"]["predicted_n"], out["content"]
        )

    async def chat(self, step: Chat, label: str) -> Request:
        assert self.editor is not None and self.server is not None
        body = {
            "messages": chat_messages(self.editor, step),
            "max_tokens": self.options.chat_tokens,
            "temperature": 0.0,
            "cache_prompt": True,
        }
        t0 = time.perf_counter()
        out = await asyncio.to_thread(self.server.post, "/v1/chat/completions", body)
        seconds = time.perf_counter() - t0
        return Request(
            label,
            "chat",
            out["timings"]["prompt_n"],
            seconds,
            out["timings"]["predicted_n"],
            out["choices"][0]["message"]["content"] or "",
        )

    async def finish(self, result: SideResult) -> None:
        assert self.server is not None
        result.peak_rss = self.server.peak_rss()
        result.checkpoint_bytes = self.server.checkpoint_bytes()
        self.server.close()


class LlamaCppPythonSide(_FixedOrderClient):
    name = "llama-cpp-python"

    def __init__(self, model: Path, layout: PromptLayout, options: RunOptions) -> None:
        super().__init__(layout, options)
        self.model = model
        self.process: subprocess.Popen[str] | None = None

    async def start(self, workload: Workload) -> None:
        self.editor = Editor(workload.files)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coderag_daemon.bench.llama_cpp_python_side",
                str(self.model),
                str(self.options.n_ctx),
                str(self.options.threads),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the llama-cpp-python process exited with {self.process.wait()}")
        return json.loads(line)

    async def complete(self, step: Complete, label: str) -> Request:
        request = {
            "tokens": self._prompt_tokens(step),
            "max_tokens": self.options.completion_tokens,
            "stop": sorted(self.layout.stop_tokens),
        }
        out = await asyncio.to_thread(self._ask, request)
        return Request(label, "complete", out["tokens"], out["seconds"], out["generated"], out["text"])

    async def chat(self, step: Chat, label: str) -> Request:
        assert self.editor is not None
        out = await asyncio.to_thread(
            self._ask, {"messages": chat_messages(self.editor, step), "max_tokens": self.options.chat_tokens}
        )
        return Request(label, "chat", out["tokens"], out["seconds"], out["generated"], out["text"])

    async def finish(self, result: SideResult) -> None:
        assert self.process is not None and self.process.stdin is not None
        result.peak_rss = peak_rss(self.process.pid)
        self.process.stdin.close()
        self.process.wait()


Side = DaemonSide | RemoteDaemonSide | ServerSide | LlamaCppPythonSide


async def replay(side: Side, workload: Workload, model_label: str, check_exact: str | None = None) -> SideResult:
    """Run the workload's steps on `side`; `check_exact` names a completion to recompute from an
    empty cache afterwards (the daemon only: the others recompute what the edit invalidated anyway)."""
    result = SideResult(side.name, model_label, workload.name)
    labels = iter(workload.labels)
    await side.start(workload)
    try:
        for step in workload.steps:
            if isinstance(step, Edit):
                await side.edit(step)
                continue
            label = next(labels)
            request = await (side.complete(step, label) if isinstance(step, Complete) else side.chat(step, label))
            result.requests.append(request)
            print(
                f"    {side.name:<22} {label:<28} {request.tokens:>6} tokens {request.seconds:7.2f} s  "
                f"{request.text[:40]!r}",
                file=sys.stderr,
                flush=True,
            )
            if label == check_exact and isinstance(side, DaemonSide) and isinstance(step, Complete):
                result.exact = await side.from_scratch(step) == request.text
    finally:
        await side.finish(result)
    return result


def tokenizer_layout(model: Path) -> tuple[Model, PromptLayout]:
    """The model's tokenizer, and the layout the peer sides send: prefix first, as llama-server's
    ``/infill`` and llama.vscode lay a request out."""
    tokenizer = Model(model)
    return tokenizer, detect_layout(tokenizer, PromptOptions(suffix_first=False))
