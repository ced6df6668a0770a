"""Suggestions of the default model (Qwen2.5-Coder-0.5B) at a partial word continue that word.

Before the prompt left the partial word out for the model to write again, the model read
'    ret' as the end of some other token and wrote the line anew ('ret    return ...'), or went on
from the wrong word ('tok' + 'ken', 'cla' + 'ms'). The sample project's auth.py is open, a
function is being typed at its end; one model, one thread, a few tokens per suggestion.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from coderag_daemon import default_model
from coderag_daemon.engine import ContextCache, EngineOptions, Model
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


@pytest.fixture(scope="module")
def suggest() -> Callable[[str], str]:
    """suggest(typed) -> the suggestion at the end of auth.py followed by `typed`."""
    model = Model(default_model.model_path())
    # No time budget: what is tested must not depend on how busy the machine is.
    options = Options(max_completion_tokens=6, completion_time_budget_ms=60000, completion_wait_tokens=1 << 17)
    project = Project(options)
    project.set_roots([SAMPLE])
    project.set_layout(detect_layout(model, options.prompt_options()))
    session = CacheSession(ContextCache(model, EngineOptions(n_ctx=2048, n_threads=1)))
    uri = path_to_uri(AUTH)

    def suggest(typed: str) -> str:
        text = AUTH.read_text() + typed
        doc = project.opened(uri, text, 1, "python")
        try:
            return jobs.complete(session, project, doc, cursor_window(text, len(text)), options).text
        finally:
            project.closed(uri)

    return suggest


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
