"""Greedy generation through llama-server equals the local engine's on the same model and prompt: the
remote engine sends the same token ids, the server decodes them with the same llama.cpp, and picks
the same tokens (a constrained first token too). The text is always the same; the token ids too,
but where the text has invalid UTF-8: a token llama-server does not stream (it leaves the text inside
a character) is known only by its replaced text there, which several byte tokens spell."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from coderag_daemon.bench.llama_server import LlamaServer, ServerBuild, ServerSettings
from coderag_daemon.engine import ContextCache, EngineOptions, GenerationOptions, Model, generate
from coderag_daemon.engine.remote import OpenAIContext, RemoteContext, RemoteOptions, connect
from fixtures.tiny_models import tiny_model_path

from .conftest import make_segments

LOCAL = EngineOptions(n_ctx=4096, n_threads=1)
"""The daemon's defaults but the size and threads, which the server is started with: the same batch
(llama-server's micro-batch is 512) and f16 KV, so both compute the same sums in the same order."""
SERVER_FLAGS = ("--flash-attn", "off")
"""As the local engine (flash attention sums in another order); llama-server's default is auto."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    process = LlamaServer(
        ServerBuild().ensure(),
        tiny_model_path("dense"),
        4096,
        1,
        ServerSettings("test", SERVER_FLAGS),
        log,
        trace=False,
    )
    yield process
    process.close()


def test_greedy_completions_equal_the_local_engines(server: LlamaServer, source_texts: list[str]) -> None:
    path: Path = tiny_model_path("dense")
    local_model = Model(path)
    local = ContextCache(local_model, LOCAL)
    remote = RemoteContext(Model(path, vocab_only=True), RemoteOptions(url=server.url, n_ctx=4096))
    rng = random.Random(7)
    compared = 0
    for round_ in range(4):
        segments = make_segments(local_model, source_texts, rng, n_segments=3 + round_, size=200)
        segments.append(local_model.tokenize(f"def helper_{round_}(value):\n    return"))
        generation = GenerationOptions(max_tokens=48)
        outputs = []
        for cache in (local, remote):
            stats = cache.update(segments)
            assert stats.completed and stats.n_tokens == sum(map(len, segments))
            outputs.append(generate(cache, generation))
        assert outputs[0].text == outputs[1].text and outputs[0].stop_reason == outputs[1].stop_reason, outputs
        assert len(outputs[0].tokens) == len(outputs[1].tokens)
        if "\ufffd" not in outputs[0].text:
            assert outputs[0].tokens == outputs[1].tokens, (round_, outputs)
        # a constrained first token: the best of the allowed ones, on both
        allowed = np.array(sorted({*local_model.tokenize(" x"), *local_model.tokenize(" value")}))
        constrained = []
        for cache in (local, remote):
            cache.update(segments)
            constrained.append(generate(cache, generation, constrain=lambda w, a=allowed: a if not w else None))
        assert constrained[0].text == constrained[1].text, (round_, constrained)
        assert constrained[0].tokens[0] == constrained[1].tokens[0] and constrained[0].tokens[0] in allowed
        compared += len(outputs[0].tokens) + len(constrained[0].tokens)
    assert compared > 40


def test_the_figures_are_the_servers(server: LlamaServer, source_texts: list[str]) -> None:
    path = tiny_model_path("dense")
    vocab = Model(path, vocab_only=True)
    remote = RemoteContext(vocab, RemoteOptions(url=server.url, n_ctx=4096))
    segments = make_segments(vocab, source_texts, random.Random(3), n_segments=3, size=150)
    first = remote.update(segments)
    assert first.tokens_reprocessed + first.restored_from == first.n_tokens and first.decode_ms > 0
    edited = [*segments[:2], vocab.tokenize("# edited\n") + segments[2]]
    second = remote.update(edited)
    assert second.restored_from == second.first_changed >= len(segments[0]) + len(segments[1])
    assert second.tokens_reprocessed == second.n_tokens - second.restored_from
    again = remote.update(edited)
    assert (again.restore_kind, again.tokens_reprocessed) == ("none", 0)


def test_greedy_text_through_the_openai_api_equals_the_local_engines(
    server: LlamaServer, source_texts: list[str]
) -> None:
    """llama-server's /v1/completions (no GPU here for vLLM or SGLang): the prompt as text, tokenized
    again by the server; the answer as text."""
    path = tiny_model_path("dense")
    local_model = Model(path)
    local = ContextCache(local_model, LOCAL)
    remote = connect(Model(path, vocab_only=True), RemoteOptions(url=server.url + "/v1", n_ctx=4096))
    assert isinstance(remote, OpenAIContext)
    segments = make_segments(local_model, source_texts, random.Random(11), n_segments=3, size=200)
    segments.append(local_model.tokenize("def helper(value):\n    return"))
    answers = []
    for cache in (local, remote):
        cache.update(segments)
        answers.append(generate(cache, GenerationOptions(max_tokens=32)))
    assert answers[0].text == answers[1].text and answers[0].stop_reason == answers[1].stop_reason, answers
    again = remote.update(segments)  # the server cached the prompt: it decodes its last token again
    assert again.restored_from >= again.n_tokens - 1 and again.tokens_reprocessed <= 1, again
    edited = [*segments[:-1], local_model.tokenize("def other(value):\n    return")]
    stats = remote.update(edited)
    assert stats.restored_from >= sum(map(len, segments[:-1])) and stats.tokens_reprocessed < len(edited[-1]) + 2
