"""Chunks of the workspace index for a chat question: text for the request tail, and its sources.

The text goes in the request tail, after the cached file context, so retrieval never invalidates
the cache; it holds only chunks of files that are not in that context already, within a token
budget. Each chunk is headed by its ``path:first-last`` label (1-based lines, as people and the model
read them), which the model is asked to cite; the same chunks come back as sources with URIs and LSP
ranges, for the client to show as links.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .chunking import split_lines
from .search import Hit
from .workspace_index import WorkspaceIndex

CountTokens = Callable[[str], int]

HEADER = "Code from other files of the project that may help to answer; cite it by its path:line label.\n"
_BACKTICKS = re.compile(r"`{3,}")


@dataclass(frozen=True)
class RetrievalOptions:
    token_budget: int = 1024
    """Tokens of the whole retrieved text at most (header included)."""
    candidates: int = 16
    """Chunks asked from the index; the best that fit the budget are kept."""
    min_relative_score: float = 0.25
    """Chunks scoring below this fraction of the best one are left out: they cost prefill time and
    rarely help."""
    min_lines: int = 3
    """A best chunk too long for the budget is cut to its first lines, but not below this many."""


@dataclass(frozen=True)
class Retrieved:
    text: str
    """The block for the request tail; empty when nothing relevant was found."""
    sources: tuple[Hit, ...]
    """The chunks in ``text``, in order, with the ranges actually shown."""
    tokens: int

    def sources_json(self) -> list[dict[str, Any]]:
        """For the chat result: each source's ``uri``, ``path``, LSP ``range``, ``label``, ``title``, ``score``."""
        return [hit.to_json(with_text=False) for hit in self.sources]


EMPTY = Retrieved("", (), 0)


def retrieve(
    index: WorkspaceIndex,
    question: str,
    count_tokens: CountTokens,
    *,
    exclude_paths: Iterable[str | os.PathLike[str]] = (),
    options: RetrievalOptions | None = None,
) -> Retrieved:
    """The chunks that best answer ``question``, leaving out the files in ``exclude_paths`` (those
    already in the model's context), formatted within the token budget."""
    options = options or RetrievalOptions()
    return select(index.search(question, options.candidates, exclude_paths), count_tokens, options)


def select(hits: Sequence[Hit], count_tokens: CountTokens, options: RetrievalOptions | None = None) -> Retrieved:
    """Take ranked hits in order while they fit the budget; the first one is cut to fit if needed."""
    options = options or RetrievalOptions()
    if not hits:
        return EMPTY
    budget = options.token_budget - count_tokens(HEADER)
    floor = hits[0].score * options.min_relative_score
    chosen: list[tuple[Hit, str]] = []
    used = 0
    for hit in hits:
        if hit.score < floor:
            break
        piece = format_chunk(hit)
        cost = count_tokens(piece)
        if used + cost > budget:
            cut = None if chosen else _cut_to_fit(hit, count_tokens, budget, options.min_lines)
            if cut is None:
                continue
            hit, piece = cut
            cost = count_tokens(piece)
        chosen.append((hit, piece))
        used += cost
    while chosen:  # pieces are counted apart; their sum is close to, not always equal to, the whole
        text = HEADER + "".join(piece for _, piece in chosen)
        tokens = count_tokens(text)
        if tokens <= options.token_budget:
            return Retrieved(text, tuple(hit for hit, _ in chosen), tokens)
        chosen.pop()
    return EMPTY


def format_chunk(hit: Hit) -> str:
    """A chunk under its label and title, fenced (with a fence longer than any inside it)."""
    fence = "`" * max([3, *(len(run) + 1 for run in _BACKTICKS.findall(hit.text))])
    body = hit.text if hit.text.endswith(("\n", "\r")) else hit.text + "\n"
    return f"\n{hit.label} ({hit.title})\n{fence}\n{body}{fence}\n"


def _cut_to_fit(hit: Hit, count_tokens: CountTokens, budget: int, min_lines: int) -> tuple[Hit, str] | None:
    """The hit cut to its longest run of first lines whose piece fits ``budget``, if at least ``min_lines``."""
    lines = split_lines(hit.text)

    def cut(n: int) -> tuple[Hit, str]:
        shorter = replace(hit, end_line=hit.start_line + n, text="".join(lines[:n]))
        return shorter, format_chunk(shorter)

    low, high = min_lines - 1, len(lines) - 1  # low: fits (or too short to use), high + 1: known not to fit
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(cut(middle)[1]) <= budget:
            low = middle
        else:
            high = middle - 1
    return cut(low) if low >= min_lines else None
