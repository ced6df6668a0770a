"""The model work behind each request, as functions the worker runs with a `Session`.

Each builds its target context (the project's file segments, then a request tail), brings the cache
to it, and generates. Completions and chat share the file segments. Chat runs on its own sequence
where the engine has a second one (dense models, a full-size SWA cache): it takes the files' cells
from the completion's sequence, and each keeps its tail, so going back to completing after a
question reprocesses nothing that did not change. With one sequence, a switch reprocesses the edited
file and the tail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engine import Context, ContextCache, Generation, GenerationOptions, UpdateStats, generate
from ..index import Retrieved
from ..index.retrieval import CountTokens
from ..options import Options
from ..prompting.completion import StopRule, Window, continuation, trim_suffix_overlap
from ..workspace.documents import Document
from ..workspace.project import Project
from .model_worker import Session, update_figures
from .warm_cache import WarmCache

CHAT_SEQ = 1
"""The engine sequence of chat; completions and preloads use sequence 0."""
WARM_UP_SEQ = CHAT_SEQ
"""Completions while the context is still being decoded use the chat's sequence (`completion_context`)."""

Retrieve = Callable[[CountTokens, frozenset[str], int], Retrieved]
"""``retrieve(count_tokens, paths already in the context, token budget)``: code for a chat tail."""

Definitions = Callable[[CountTokens, int], str]
"""``definitions(count_tokens, token budget)``: signatures of the names near the cursor, for a completion
tail (prompting/definitions.py)."""

_STUB_MARKUP = 16
"""Tokens of the definitions' stub file header in a completion tail."""


class Interrupted(Exception):
    """The request was cancelled before its prefill finished."""


@dataclass
class Outcome:
    text: str
    stop_reason: str
    stats: UpdateStats
    prefill_ms: float
    first_token_ms: float | None
    generation_ms: float
    tokens_generated: int
    retrieved: Retrieved | None = None
    """A chat's code from the workspace index (its sources are cited)."""
    left_out: int = 0
    """Tokens of file context a completion left out because they were not decoded yet."""
    forward_passes: int = 0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    """Generation's decode calls, and the tokens it decoded on a guess and took (`engine.generate`)."""

    @classmethod
    def of(
        cls,
        text: str,
        gen: Generation,
        stats: UpdateStats,
        prefill_ms: float,
        *,
        retrieved: Retrieved | None = None,
        left_out: int = 0,
    ) -> Outcome:
        """The outcome of a request whose answer `text` came from generation `gen`."""
        return cls(
            text,
            gen.stop_reason,
            stats,
            prefill_ms,
            gen.first_token_ms,
            gen.total_ms,
            len(gen.tokens),
            retrieved,
            left_out,
            gen.forward_passes,
            gen.draft_tokens,
            gen.accepted_tokens,
        )

    def as_stats(self) -> dict[str, Any]:
        out = {
            "tokensInContext": self.stats.n_tokens,
            **update_figures(self.stats, self.prefill_ms),
            "timeToFirstTokenMs": round(self.prefill_ms + (self.first_token_ms or 0.0), 1),
            "generationMs": round(self.generation_ms, 1),
            "tokensGenerated": self.tokens_generated,
            "forwardPasses": self.forward_passes,
            "draftTokens": self.draft_tokens,
            "draftAccepted": self.accepted_tokens,
            "stopReason": self.stop_reason,
        }
        if self.retrieved is not None:
            out["retrievedTokens"] = self.retrieved.tokens
        if self.left_out:
            out["contextTokensLeftOut"] = self.left_out
        return out


def completion_target(
    project: Project, doc: Document, window: Window, options: Options, definitions: Definitions | None = None
) -> list[list[int]]:
    """The whole context of a completion at `window`: every file but `doc`, then the request."""
    files = project.segments(exclude=doc)
    return [*files, _request_tail(project, doc, window, options, definitions, files)[0]]


def _request_tail(
    project: Project,
    doc: Document,
    window: Window,
    options: Options,
    definitions: Definitions | None,
    files: list[list[int]],
) -> tuple[list[int], str]:
    """A completion's request tail (with `definitions`, the signatures of names near the cursor,
    within `options.completion_definition_tokens` and the room n_ctx has left), and the end of the
    prefix it leaves out for the model to write first."""
    tail, healed = _completion_tail(project, doc, window)
    if definitions is None or options.completion_definition_tokens <= 0:
        return tail, healed
    layout = project.layout()
    room = options.n_ctx - sum(map(len, files)) - len(tail) - options.max_completion_tokens - _STUB_MARKUP
    budget = min(options.completion_definition_tokens, room)
    text = definitions(lambda t: len(layout.tokenizer.tokenize(t)), budget) if budget > 0 else ""
    return _completion_tail(project, doc, window, text) if text else (tail, healed)


def _completion_tail(project: Project, doc: Document, window: Window, definitions: str = "") -> tuple[list[int], str]:
    """The request tail, and the end of the prefix it leaves out for the model to write first."""
    layout = project.layout()
    healed = layout.healed_text(window.prefix)
    prefix = window.prefix[: len(window.prefix) - len(healed)]
    tail = layout.completion_tail(
        project.display_path(doc), prefix, window.suffix, definitions, window.head, window.near
    )
    return tail, healed


def within_reach(segments: list[list[int]], kept: int, wait: int) -> tuple[list[list[int]], int]:
    """The file segments cut `wait` tokens past the `kept` ones the cache holds, and how many tokens
    that leaves out. After a cold start, an edit far up the context or a checkout, most of the
    context is still to be decoded (tens of seconds); a completion answers from what is there, and
    the preload brings the rest in for the next one. The first segment (the head) always stays."""
    total = sum(map(len, segments))
    cut = max(kept + wait, len(segments[0]) if segments else 0)
    if cut >= total:
        return segments, 0
    out: list[list[int]] = []
    start = 0
    for segment in segments:
        if start + len(segment) > cut:
            if cut > start:
                out.append(segment[: cut - start])
            break
        out.append(segment)
        start += len(segment)
    return out, total - cut


def completion_context(
    cache: Context, files: list[list[int]], tail: list[int], wait: int
) -> tuple[int, list[list[int]], int]:
    """The sequence a completion runs on, the file context it gets, and how many tokens of it that
    leaves out.

    Normally sequence 0, with the files within `wait` tokens of what it holds (`within_reach`). While
    much of the context is still to be decoded (a project just opened, an edit far up, a checkout),
    the preload extends sequence 0 between requests, and a completion there would decode its whole
    cursor window again every time (hundreds of tokens, seconds) and cut the preload's work off. So
    then a completion runs on the other sequence and keeps to the files it had the time before: it
    decodes only what changed in its window, while the preload goes on undisturbed. Once sequence 0
    holds the whole context, completions go back to it (the preload brought their window there too).
    With one sequence (sliding-window caches, recurrent models) there is no such choice."""
    total = sum(map(len, files))
    # What the update to the whole target keeps; of the files alone the last token would count as
    # decoded again, for logits that a completion takes after its tail instead.
    kept = min(cache.reusable([*files, tail]), total)
    near, left_out = within_reach(files, kept, wait)
    if not isinstance(cache, ContextCache) or cache.n_seq < 2:
        return 0, near, left_out
    ends = cache.segment_ends(WARM_UP_SEQ)
    held = ends[-2] if len(ends) >= 2 else 0  # the file context of the last request there
    if held and cache.cached_prefix(files, WARM_UP_SEQ) >= held:
        same, same_left_out = within_reach(files, held, 0)
    else:
        same, same_left_out = near, left_out
    cost = sum(map(len, near)) + len(tail) - cache.reusable([*near, tail])
    cost_same = sum(map(len, same)) + len(tail) - cache.reusable([*same, tail], WARM_UP_SEQ)
    if (left_out == 0 and cost <= cost_same + wait) or cost < cost_same:
        return 0, near, left_out
    return WARM_UP_SEQ, same, same_left_out


def _prefill(session: Session, target: list[list[int]], seq: int = 0) -> tuple[UpdateStats, float]:
    t0 = time.perf_counter()
    stats = session.update(target, seq)
    if not stats.completed:
        raise Interrupted()
    return stats, (time.perf_counter() - t0) * 1000


def complete(
    session: Session,
    project: Project,
    doc: Document,
    window: Window,
    options: Options,
    definitions: Definitions | None = None,
) -> Outcome:
    """An inline completion at the cursor between window.prefix and window.suffix, over the file
    context within `options.completion_wait_tokens` of what the cache holds; with `definitions`, the
    signatures of names near the cursor go in the tail, within `options.completion_definition_tokens`
    and the room n_ctx has left."""
    files = project.segments(exclude=doc)
    tail, healed = _request_tail(project, doc, window, options, definitions, files)
    seq, files, left_out = completion_context(session.cache, files, tail, options.completion_wait_tokens)
    stats, prefill_ms = _prefill(session, [*files, tail], seq)
    rule = StopRule.at(window)

    def should_stop(generated: str) -> int | None:  # the rule sees the text after the cursor
        keep = rule.cut(generated[len(healed) :]) if len(generated) > len(healed) else None
        return None if keep is None else len(healed) + keep

    layout = project.layout()
    gen = generate(
        session.cache,
        GenerationOptions(
            max_tokens=options.max_completion_tokens,
            stop_tokens=layout.stop_tokens,
            time_budget_s=options.completion_time_budget_ms / 1000,
        ),
        cancelled=session.cancelled,
        should_stop=should_stop,
        constrain=layout.healing(healed),
    )
    text = continuation(healed, gen.text)
    if gen.stop_reason in ("max_tokens", "time", "context_full"):
        text = rule.cut_short(text)
    text = trim_suffix_overlap(text, window.suffix)
    return Outcome.of(text, gen, stats, prefill_ms, left_out=left_out)


def preload(
    session: Session,
    project: Project,
    target: Callable[[], list[list[int]]],
    done: Callable[[], None],
    warm: WarmCache | None = None,
) -> None:
    """Bring the cache to the context the next request is expected to need; yields to requests.

    When the files changed since the last question (an edit settled, files were opened or changed
    on disk), the chat's cached tail is stale, and holding its cells slows every completion
    (attention spans them). Once the preload reached its target they are freed (until then the
    completions asked meanwhile use that sequence, `completion_context`); the next question takes
    the files from the completion's sequence again. A chat that already holds the current files
    keeps them for a follow-up.
    With `warm`, a saved cache that fits the files better is loaded first (a branch switch), and
    the cache is saved once the preload reached its target."""
    try:
        files = project.segments()
        if warm is not None:
            warm.switch_if_better(session, project, session.cache.cached_prefix(files))
        stats = session.update(target())
        if stats.completed and session.cache.cached_prefix(files, CHAT_SEQ) < sum(map(len, files)):
            session.cache.drop(CHAT_SEQ)
        if warm is not None and stats.completed:
            warm.after_preload(session, project)
    finally:
        done()


def chat(
    session: Session,
    project: Project,
    messages: list[dict[str, str]],
    note: str | None,
    options: Options,
    on_text: Callable[[str], None],
    retrieve: Retrieve | None = None,
) -> Outcome:
    """An answer about the project, streamed through `on_text`, with code of files outside the
    context picked by `retrieve` in the request tail."""
    layout = project.layout()
    segments = project.segments()
    retrieved = None
    if retrieve is not None and layout.options.retrieval_tokens > 0:
        retrieved = retrieve(
            lambda text: len(layout.tokenizer.tokenize(text)), project.context_paths(), layout.options.retrieval_tokens
        )
    target = [*segments, layout.chat_tail(messages, note, retrieved.text if retrieved else "")]
    stats, prefill_ms = _prefill(session, target, CHAT_SEQ)
    gen = generate(
        session.cache,
        GenerationOptions(
            max_tokens=options.max_chat_tokens, stop_tokens=layout.stop_tokens, stop=layout.chat_stop_strings
        ),
        cancelled=session.cancelled,
        on_text=on_text,
    )
    return Outcome.of(gen.text, gen, stats, prefill_ms, retrieved=retrieved)
