"""`coderag/chat`: a question about the project, answered from the cached files and code retrieved
from the workspace index, streamed as `coderag/chatDelta` notifications when the client gives a
token. See docs/PROTOCOL.md for the payloads."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pygls.exceptions import JsonRpcInvalidParams

from ..index import RetrievalOptions, Retrieved, retrieve
from ..index.retrieval import CountTokens
from ..prompting.prompts import chat_note
from ..worker import jobs
from . import methods, params

if TYPE_CHECKING:
    from .server import CoderagServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    """A chat request's parameters, checked."""

    messages: list[dict[str, str]]
    """The conversation so far, ending with the question."""
    note: str | None
    """Where the user is, for the prompt."""
    selected: str
    """The selected text, which joins the question in the index search."""
    token: str | int | None
    """The client's token for streamed deltas; None for none."""

    @classmethod
    def parse(cls, ls: CoderagServer, raw: Any) -> Question:
        question = params.text(raw, "question")
        history = params.param(raw, "history", list, required=False) or []
        if not all(
            isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
            for m in history
        ):
            raise JsonRpcInvalidParams("history must be a list of {role: 'user'|'assistant', content: string}")
        token = params.param(raw, "token", (str, int), required=False)
        note, selected = _where(ls, raw)
        return cls([*history, {"role": "user", "content": question}], note, selected, token)


async def answer(ls: CoderagServer, raw: Any) -> dict[str, Any]:
    q = Question.parse(ls, raw)
    cancel = threading.Event()

    def on_text(delta: str) -> None:  # on the worker thread
        if q.token is not None:
            ls.call_soon(send_delta, delta)

    def send_delta(delta: str) -> None:  # on the event loop, where a cancel is seen before its reply goes out
        if not cancel.is_set():
            ls.protocol.notify(methods.CHAT_DELTA, {"token": q.token, "delta": delta})

    def find(count_tokens: CountTokens, in_context: frozenset[str], budget: int) -> Retrieved:
        return retrieve(
            ls.index,
            f"{q.messages[-1]['content']}\n{q.selected}",
            count_tokens,
            exclude_paths=in_context,
            options=RetrievalOptions(token_budget=budget),
        )

    outcome: jobs.Outcome = await ls.run(
        functools.partial(
            jobs.chat,
            project=ls.project,
            messages=q.messages,
            note=q.note,
            options=ls.options,
            on_text=on_text,
            retrieve=find,
        ),
        label="chat",
        cancel=cancel,
    )
    ls.worker.report_request({"kind": "chat", **outcome.as_stats()})
    log.info("chat: %s", outcome.as_stats())
    sources = outcome.retrieved.sources_json() if outcome.retrieved is not None else []
    if q.token is not None:
        ls.notify(methods.CHAT_DELTA, {"token": q.token, "delta": "", "done": True, "sources": sources})
    return {"answer": outcome.text, "stats": outcome.as_stats(), "sources": sources}


def _where(ls: CoderagServer, raw: dict[str, Any]) -> tuple[str | None, str]:
    """The note on where the user is (None without a document), and the selected text."""
    uri = params.param(raw, "uri", str, required=False)
    if uri is None:
        return None, ""
    doc = params.document(ls.project, uri)
    line = params.position(raw["position"], "position")[0] if raw.get("position") is not None else None
    selected = ""
    if (selection := raw.get("selection")) is not None:
        if not isinstance(selection, dict):
            raise JsonRpcInvalidParams("selection must be a range {start, end}")
        start = params.offset(doc, *params.position(selection.get("start"), "selection.start"))
        end = params.offset(doc, *params.position(selection.get("end"), "selection.end"))
        selected = doc.text[start:end] if end > start else ""
    return chat_note(ls.project.display_path(doc), line, selected), selected
