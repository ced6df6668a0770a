"""Suggestions of the default model (Qwen2.5-Coder-0.5B) at a partial word continue that word, and
speculative decoding changes them only where batching alone decides.

Before the prompt left the partial word out for the model to write again, the model read
'    ret' as the end of some other token and wrote the line anew ('ret    return ...'), or went on
from the wrong word ('tok' + 'ken', 'cla' + 'ms'). The sample project's auth.py is open, a
function is being typed at its end; one model, one thread, a few tokens per suggestion.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coderag_daemon import default_model
from coderag_daemon.engine import ContextCache, EngineOptions, Generation, GenerationOptions, Model, generate
from coderag_daemon.options import Options
from coderag_daemon.prompting.completion import cursor_window
from coderag_daemon.prompting.prompts import detect_layout
from coderag_daemon.worker import jobs
from coderag_daemon.workspace.documents import path_to_uri
from coderag_daemon.workspace.project import Project
from tests.sessions import CacheSession

pytestmark = pytest.mark.skipif(
    not default_model.is_installed(), reason="the default model is not installed (make model)"
)

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample_project"
AUTH = SAMPLE / "tasktrack" / "auth.py"
FUNCTION = "\n\ndef token_is_expired(token, now):\n"


# No time budget: what is tested must not depend on how busy the machine is.
OPTIONS = Options(max_completion_tokens=6, completion_time_budget_ms=60000, completion_wait_tokens=1 << 17)
Complete = Callable[[str, Options], jobs.Outcome]


@pytest.fixture(scope="module")
def complete() -> Complete:
    """complete(typed, options) -> the completion at the end of auth.py followed by `typed`."""
    model = Model(default_model.model_path())
    project = Project(OPTIONS)
    project.set_roots([SAMPLE])
    project.set_layout(detect_layout(model, OPTIONS.prompt_options()))
    session = CacheSession(ContextCache(model, EngineOptions(n_ctx=2048, n_threads=1)))
    uri = path_to_uri(AUTH)

    def complete(typed: str, options: Options) -> jobs.Outcome:
        text = AUTH.read_text() + typed
        doc = project.opened(uri, text, 1, "python")
        try:
            return jobs.complete(session, project, doc, cursor_window(text, len(text)), options)
        finally:
            project.closed(uri)

    return complete


@pytest.fixture(scope="module")
def suggest(complete: Complete) -> Callable[[str], str]:
    """suggest(typed) -> the suggestion at the end of auth.py followed by `typed`."""
    return lambda typed: complete(typed, OPTIONS).text


@pytest.mark.parametrize(
    ("typed", "word"),
    [
        ("\n\ncla", "class"),  # at the start of a line
        (FUNCTION + "    ret", "return"),  # after indentation
        (FUNCTION + "    if token:\n        if now:\n            ret", "return"),  # after deeper indentation
        (FUNCTION + "    payload = tok", "token"),  # inside a name
        (FUNCTION + "    return now >= cla", "claims"),  # after an operator
        (FUNCTION + '    raise AuthError("missing bea', "bearer"),  # inside a string
    ],
)
def test_the_suggestion_continues_the_typed_word(suggest: Callable[[str], str], typed: str, word: str) -> None:
    text = suggest(typed)
    partial = re.search(r"\w+\Z", typed)
    assert partial is not None
    assert partial.group() + re.match(r"\w*", text).group() == word, text  # type: ignore[union-attr]


REPEATING = [
    # the body of verify_token written again
    "\n\ndef verify_token_strictly(token: str, *, signing_key: str) -> TokenClaims:\n    payload, sep, signature = ",
    # register written again
    "\n\n    def register_admin(self, email: str, password: str) -> User:\n        user = User(",
    FUNCTION + "    payload, sep, signature = ",  # at a name
    "\n\ndef _b64encode_text(text: str) -> str:\n    return ",
]


NEAR_TIE = 1.0
"""Logits of a token decoded in a batch of a draft and alone differ by up to ~0.5 on this quantized
model (other kernels, other rounding, as any other batching)."""


def test_speculative_decoding_changes_completions_only_at_near_ties(
    complete: Complete, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completions in code that repeats the file, with drafts checked in one pass and one token at a
    time, are the same up to a token where greedy decoding is at a near-tie, which the batching
    decides; most are the same throughout. The drafts save forward passes."""
    options = replace(OPTIONS, max_completion_tokens=48)
    runs: list[tuple[list[int], Generation]] = []

    def recorded(cache: ContextCache, gen_options: GenerationOptions, **kwargs: Any) -> Generation:
        context = list(cache.tokens)
        runs.append((context, generate(cache, gen_options, **kwargs)))
        return runs[-1][1]

    monkeypatch.setattr(jobs, "generate", recorded)
    monkeypatch.setattr(jobs, "GenerationOptions", partial(GenerationOptions, speculative=True))
    speculative = [complete(typed, options) for typed in REPEATING]
    monkeypatch.setattr(jobs, "GenerationOptions", GenerationOptions)
    plain = [complete(typed, options) for typed in REPEATING]
    same = 0
    for s, p, (context, s_gen), (_, p_gen) in zip(
        speculative, plain, runs[: len(REPEATING)], runs[len(REPEATING) :], strict=True
    ):
        assert p.draft_tokens == 0 and s.draft_tokens > 0
        if s_gen.tokens == p_gen.tokens:
            assert (s.text, s.stop_reason) == (p.text, p.stop_reason)
            assert s.forward_passes + s.accepted_tokens == p.forward_passes
            same += 1
            continue
        j = next(i for i, (a, b) in enumerate(zip(s_gen.tokens, p_gen.tokens, strict=False)) if a != b)
        fresh = ContextCache(Model(default_model.model_path()), EngineOptions(n_ctx=2048, n_threads=1))
        fresh.update([context + p_gen.tokens[:j]])
        top = np.sort(fresh.logits())[-2:]
        assert top[1] - top[0] < NEAR_TIE, f"differs at token {j} with a margin of {top[1] - top[0]:.2f}"
    assert same >= len(REPEATING) - 1
    assert sum(s.accepted_tokens for s in speculative) > 0
