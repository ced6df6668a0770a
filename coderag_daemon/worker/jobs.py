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

from ..engine import Generation, GenerationOptions, UpdateStats, generate
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

Retrieve = Callable[[CountTokens, frozenset[str], int], Retrieved]
"""``retrieve(count_tokens, paths already in the context, token budget)``: code for a chat tail."""


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


def completion_target(project: Project, doc: Document, window: Window) -> list[list[int]]:
    """The whole context of a completion at `window`: every file but `doc`, then the request."""
    return [*project.segments(exclude=doc), _completion_tail(project, doc, window)[0]]


def _completion_tail(project: Project, doc: Document, window: Window) -> tuple[list[int], str]:
    """The request tail, and the end of the prefix it leaves out for the model to write first."""
    layout = project.layout()
    healed = layout.healed_text(window.prefix)
    prefix = window.prefix[: len(window.prefix) - len(healed)]
    return layout.completion_tail(project.display_path(doc), prefix, window.suffix), healed


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


def _prefill(session: Session, target: list[list[int]], seq: int = 0) -> tuple[UpdateStats, float]:
    t0 = time.perf_counter()
    stats = session.update(target, seq)
    if not stats.completed:
        raise Interrupted()
    return stats, (time.perf_counter() - t0) * 1000


def complete(session: Session, project: Project, doc: Document, window: Window, options: Options) -> Outcome:
    """An inline completion at the cursor between window.prefix and window.suffix, over the file
    context within `options.completion_wait_tokens` of what the cache holds."""
    files = project.segments(exclude=doc)
    tail, healed = _completion_tail(project, doc, window)
    # What the update to the whole target keeps; of the files alone the last token would count as
    # decoded again, for logits that a completion takes after its tail instead.
    kept = min(session.cache.reusable([*files, tail]), sum(map(len, files)))
    files, left_out = within_reach(files, kept, options.completion_wait_tokens)
    stats, prefill_ms = _prefill(session, [*files, tail])
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
    (attention spans them). They are freed; the next question takes the files from the completion's
    sequence again. A chat that already holds the current files keeps them for a follow-up.
    With `warm`, a saved cache that fits the files better is loaded first (a branch switch), and
    the cache is saved once the preload reached its target."""
    try:
        files = project.segments()
        if warm is not None:
            warm.switch_if_better(session, project, session.cache.cached_prefix(files))
        if session.cache.cached_prefix(files, CHAT_SEQ) < sum(map(len, files)):
            session.cache.drop(CHAT_SEQ)
        stats = session.update(target())
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
