"""The file context's prompt arithmetic: its token budget, and each file's segment within it.

Which files the context holds, and in which order, is `workspace.file_order.FileOrder`; this module
only says how one file is laid out for a model, so that it can run on the model worker outside any lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..settings import default_of
from .prompts import PromptLayout

log = logging.getLogger("coderag_daemon.prompting.context")

# No tokenizer makes tokens longer than this many characters on average over a budget's worth of
# text, so a file is tokenized only this far to learn that it is over budget.
_MAX_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class ContextOptions:
    token_budget: int = default_of("context_tokens")
    """Tokens of all file segments together (the head and request tail come on top)."""
    low_water: float = 0.75
    """Past a limit, evict down to this fraction of it, so that the next eviction is far off."""
    max_files: int = 64
    """Files in the context at most; many tiny files also slow the model down."""

    def __post_init__(self) -> None:
        if self.token_budget < 1 or self.max_files < 1:
            raise ValueError(
                f"token_budget and max_files must be positive, got {self.token_budget} and {self.max_files}"
            )
        if not 0 < self.low_water <= 1:
            raise ValueError(f"low_water must be in (0, 1], got {self.low_water}")


@dataclass(frozen=True)
class Segment:
    """One file's tokens as the model reads them, header included."""

    tokens: tuple[int, ...]
    truncated: bool = False
    """Only the file's first lines: the whole file alone is over the budget."""


@dataclass(frozen=True)
class ContextLayout:
    """How the file context is laid out for one model: the head, then one segment per file.

    Immutable, so a file may be tokenized with it outside the lock that guards the file order.
    """

    layout: PromptLayout
    head: tuple[int, ...]
    options: ContextOptions

    @classmethod
    def of(cls, layout: PromptLayout, repo_name: str, options: ContextOptions | None = None) -> ContextLayout:
        return cls(layout, tuple(layout.head(repo_name)), options or ContextOptions())

    def segment(self, path: str, text: str) -> Segment:
        """A file's segment under its display `path`, cut to its first lines within the budget if
        it alone exceeds it."""
        budget = self.options.token_budget
        probe = text[: budget * _MAX_CHARS_PER_TOKEN]
        tokens = self.layout.file_segment(path, probe)
        if len(tokens) <= budget and len(probe) < len(text):
            tokens = self.layout.file_segment(path, text)  # unusually long tokens: look at it all
            probe = text
        if len(tokens) <= budget:
            return Segment(tuple(tokens))
        log.info(
            "%s: %d+ tokens, more than the whole %d-token budget; keeping its first lines", path, len(tokens), budget
        )
        return Segment(tuple(self._head_lines(path, probe, tokens)), truncated=True)

    def _head_lines(self, path: str, text: str, tokens: list[int]) -> list[int]:
        """The segment of the longest run of whole first lines of `text` within the budget
        (`tokens` is the segment of all of `text`)."""
        budget = self.options.token_budget
        while len(tokens) > budget and text:
            cut = int(len(text) * budget / len(tokens) * 0.97)
            text = text[: text.rfind("\n", 0, cut) + 1 or cut]
            tokens = self.layout.file_segment(path, text)
        return tokens[:budget]
