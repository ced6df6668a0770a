"""The remote engine against a fake server (stdlib http.server) that answers what a real one should
not: garbage, an HTML page, a truncated or broken stream, another model, a small context, a refused
key, a server that is busy for a moment. Each is a clear error; the worker stays up and says it in
its status."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from coderag_daemon.engine import ContextOverflowError, GenerationOptions, Model, generate
from coderag_daemon.engine.remote import RemoteContext, RemoteError, RemoteOptions, RemoteUnavailable
from coderag_daemon.engine.remote import connect as connect_to
from coderag_daemon.options import Options
from coderag_daemon.settings import check_setting
from coderag_daemon.worker.model_worker import ModelWorker, Status
from fixtures.tiny_models import tiny_model_path

Answer = tuple[int, str, bytes]
"""(HTTP status, Content-Type, body)."""


def as_json(value: Any, status: int = 200) -> Answer:
    return status, "application/json", json.dumps(value).encode()


def events(*items: Any) -> Answer:
    return 200, "text/event-stream", b"".join(f"data: {json.dumps(i)}\n\n".encode() for i in items)


class FakeServer:
    """Answers each path from `routes` (an Answer, or a callable making one); records the requests."""

    def __init__(self, model: Model, n_ctx: int = 4096, port: int = 0) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        probe = "def probe(x):\n    return x + 1  # é\n"
        self.routes: dict[str, Answer | Callable[[], Answer]] = {
            "/health": as_json({"status": "ok"}),
            "/props": as_json({"default_generation_settings": {"n_ctx": n_ctx}, "total_slots": 1, "model_path": "m"}),
            "/tokenize": as_json({"tokens": model.tokenize(probe)}),
            "/v1/models": as_json({"data": [{"meta": {"n_vocab": model.n_vocab}}]}),
            "/completion": events(
                {"prompt_progress": {"processed": 3, "total": 3}},
                {"stop": True, "tokens": [], "timings": {"cache_n": 0, "prompt_n": 3, "prompt_ms": 1.0}},
            ),
        }
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((self.path, dict(self.headers), body))
                route = fake.routes.get(self.path.split("?")[0], (404, "text/plain", b"not found"))
                status, kind, data = route() if callable(route) else route
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def vocab() -> Model:
    return Model(tiny_model_path("dense"), vocab_only=True)


@pytest.fixture
def server(vocab: Model) -> Iterator[FakeServer]:
    fake = FakeServer(vocab)
    yield fake
    fake.close()


def options(url: str, **overrides: Any) -> RemoteOptions:
    return RemoteOptions(**{"url": url, "n_ctx": 4096, "backoff_s": 0.01, **overrides})


def connect(vocab: Model, server: FakeServer, **overrides: Any) -> RemoteContext:
    return RemoteContext(vocab, options(server.url, **overrides))


def test_a_server_that_answers_as_llama_server_does_is_used(vocab: Model, server: FakeServer) -> None:
    context = connect(vocab, server)
    stats = context.update([[1, 2, 3]])
    assert (stats.tokens_reprocessed, stats.restored_from, stats.decode_ms, stats.completed) == (3, 0, 1.0, True)
    assert server.requests[-1][2] == {
        "prompt": [1, 2, 3],
        "cache_prompt": True,
        "id_slot": 0,
        "n_predict": 0,
        "return_progress": True,
        "stream": True,
    }
    assert context.cached_prefix([[1, 2], [3, 4]]) == 3 and context.cells_used == 3


def test_garbage_is_an_error(vocab: Model, server: FakeServer) -> None:
    server.routes["/props"] = (200, "application/json", b"{not json")
    with pytest.raises(RemoteError, match="answered something that is not JSON"):
        connect(vocab, server)


def test_an_html_page_is_an_error(vocab: Model, server: FakeServer) -> None:
    server.routes["/props"] = (200, "text/html", b"<html><body>Sign in</body></html>")
    with pytest.raises(RemoteError, match="answered with an HTML page"):
        connect(vocab, server)


def test_an_html_error_page_is_retried_then_an_error(vocab: Model, server: FakeServer) -> None:
    server.routes["/props"] = (502, "text/html", b"<html>Bad Gateway</html>")
    with pytest.raises(RemoteUnavailable, match=r"unavailable \(HTTP 502 on /props\): an HTML page"):
        connect(vocab, server, retries=2)
    assert [p for p, _, _ in server.requests] == ["/props"] * 3


def test_a_busy_server_is_tried_again(vocab: Model, server: FakeServer) -> None:
    answers = [(503, "application/json", b'{"error": {"message": "Loading model"}}')]
    ok = server.routes["/props"]
    server.routes["/props"] = lambda: answers.pop() if answers else ok  # type: ignore[misc, return-value]
    assert connect(vocab, server).n_ctx == 4096


def test_a_truncated_stream_is_an_error(vocab: Model, server: FakeServer) -> None:
    context = connect(vocab, server)
    server.routes["/completion"] = events({"prompt_progress": {"processed": 1, "total": 3}})
    with pytest.raises(RemoteError, match="ended its answer early"):
        context.update([[1, 2, 3]])
    server.routes["/completion"] = (200, "text/event-stream", b'data: {"content": \n\n')
    with pytest.raises(RemoteError, match="sent an event that is not JSON"):
        context.update([[1, 2, 3]])
    server.routes["/completion"] = (200, "text/event-stream", b'error: {"message": "slot unavailable"}\n\n')
    with pytest.raises(RemoteError, match="reported an error: .*slot unavailable"):
        context.update([[1, 2, 3]])


def test_a_stream_without_token_ids_is_an_error(vocab: Model, server: FakeServer) -> None:
    context = connect(vocab, server)
    context.update([[1, 2, 3]])
    server.routes["/completion"] = events(
        {"content": "abc", "stop": False},
        {"stop": True, "stop_type": "limit", "timings": {"predicted_n": 1, "prompt_n": 1}},
    )
    with pytest.raises(RemoteError, match="sends no token ids"):
        generate(context, GenerationOptions(max_tokens=4))


def test_another_model_is_an_error(vocab: Model, server: FakeServer) -> None:
    server.routes["/tokenize"] = as_json({"tokens": [5, 6, 7]})
    with pytest.raises(RemoteError, match="vocabulary is not that of the configured model tiny-dense"):
        connect(vocab, server)


def test_another_model_with_the_same_vocabulary_is_an_error(vocab: Model, server: FakeServer) -> None:
    server.routes["/v1/models"] = as_json({"data": [{"meta": {"n_vocab": vocab.n_vocab, "n_embd": 4096}}]})
    with pytest.raises(RemoteError, match="not the configured model .*n_embd 4096 vs 64"):
        connect(vocab, server)


def test_a_smaller_context_than_the_daemons_is_an_error(vocab: Model, server: FakeServer) -> None:
    server.routes["/props"] = as_json({"default_generation_settings": {"n_ctx": 1024}, "total_slots": 2})
    with pytest.raises(RemoteError, match="slots hold 1024 tokens, fewer than the daemon's n_ctx 4096: .*-c 8192"):
        connect(vocab, server)
    with pytest.raises(RemoteError, match="slot is 5 but the server .* has 2 slot"):
        connect(vocab, server, n_ctx=1024, slot=5)


def test_a_context_past_n_ctx_is_refused_before_sending(vocab: Model, server: FakeServer) -> None:
    context = connect(vocab, server)
    sent = len(server.requests)
    with pytest.raises(ContextOverflowError):
        context.update([[1] * 5000])
    assert len(server.requests) == sent


def test_a_refused_key_is_an_error_that_does_not_show_the_key(
    vocab: Model, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODERAG_ENGINE_API_KEY", "s3cret")
    server.routes["/tokenize"] = as_json({"error": {"message": "Invalid API Key"}}, status=401)
    with pytest.raises(RemoteError, match="refused the API key") as error:
        connect(vocab, server)
    assert "s3cret" not in str(error.value)
    assert server.requests[0][1]["Authorization"] == "Bearer s3cret"


def test_a_key_file_is_read(vocab: Model, server: FakeServer, tmp_path: Any) -> None:
    (tmp_path / "key").write_text("from-file\nignored\n")
    connect(vocab, server, api_key=f"file:{tmp_path / 'key'}")
    assert server.requests[0][1]["Authorization"] == "Bearer from-file"
    with pytest.raises(RemoteError, match="cannot read the engine API key file"):
        connect(vocab, server, api_key=f"file:{tmp_path / 'none'}")


def test_a_server_that_is_down_is_unavailable(vocab: Model, server: FakeServer) -> None:
    url = server.url
    server.close()
    with pytest.raises(RemoteUnavailable, match="cannot reach the engine server .*connection refused.*check"):
        RemoteContext(vocab, options(url, retries=0))


def test_settings_check_the_engine_values() -> None:
    assert check_setting("engine", "local") is None and check_setting("engine", "https://gpu:8080/v1") is None
    assert "must be" in str(check_setting("engine", "gpu-box:8080"))
    assert check_setting("engine_api_key", "env:KEY") is None and check_setting("engine_api_key", "file:/k") is None
    assert "must be" in str(check_setting("engine_api_key", "s3cret"))
    remote = Options(engine="http://gpu:8080", engine_slot=2).engine_options()
    assert isinstance(remote, RemoteOptions) and (remote.url, remote.slot) == ("http://gpu:8080", 2)
    assert not isinstance(Options().engine_options(), RemoteOptions)


def test_the_worker_stays_up_and_says_what_is_wrong(vocab: Model, server: FakeServer) -> None:
    server.routes["/props"] = as_json({"default_generation_settings": {"n_ctx": 1024}, "total_slots": 1})
    statuses: list[Status] = []
    worker = ModelWorker(on_status=statuses.append)
    try:
        worker.load(str(vocab.path), options(server.url))
        deadline = time.monotonic() + 20
        while worker.status().state != "error":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert "fewer than the daemon's n_ctx" in str(worker.status().error)
        server.routes["/props"] = as_json({"default_generation_settings": {"n_ctx": 4096}, "total_slots": 1})
        worker.load(str(vocab.path), options(server.url))
        while worker.status().state != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert worker.status().strategy == "remote"
    finally:
        worker.stop()


def openai_server(server: FakeServer, vocab: Model, **model: Any) -> RemoteOptions:
    server.routes["/v1/models"] = as_json({"data": [{"id": "served", **model}]})
    return options(server.url + "/v1")


def test_an_openai_server_without_models_is_an_error(vocab: Model, server: FakeServer) -> None:
    server.routes["/v1/models"] = as_json({"object": "list", "data": []})
    with pytest.raises(RemoteError, match="lists no model at /models"):
        connect_to(vocab, options(server.url + "/v1"))


def test_an_openai_server_with_a_smaller_context_is_an_error(vocab: Model, server: FakeServer) -> None:
    with pytest.raises(RemoteError, match="holds 2048 tokens, fewer than the daemon's n_ctx 4096"):
        connect_to(vocab, openai_server(server, vocab, max_model_len=2048))
    with pytest.raises(RemoteError, match="n_vocab 32000 vs"):
        connect_to(vocab, openai_server(server, vocab, meta={"n_vocab": 32000}))


def test_an_openai_stream_without_usage_is_an_error(vocab: Model, server: FakeServer) -> None:
    context = connect_to(vocab, openai_server(server, vocab))
    server.routes["/v1/completions"] = events({"choices": [{"text": "x", "finish_reason": "length"}]})
    with pytest.raises(RemoteError, match="without usage figures"):
        context.update([[1, 2, 3]])
    server.routes["/v1/completions"] = events(
        {"choices": [{"text": "x", "finish_reason": None}]},
        {"choices": [], "usage": {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 1}}},
    )
    stats = context.update([[1, 2, 3]])
    assert (stats.restored_from, stats.tokens_reprocessed) == (1, 2)
    assert server.requests[-1][2]["model"] == "served" and server.requests[-1][2]["max_tokens"] == 1


def test_a_server_down_at_load_is_waited_for(vocab: Model, server: FakeServer) -> None:
    url, port = server.url, server.http.server_address[1]
    server.close()
    worker = ModelWorker()
    try:
        worker.load(str(vocab.path), options(url, retries=0))
        deadline = time.monotonic() + 20
        while worker.status().state != "error":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert "cannot reach the engine server" in str(worker.status().error)
        back = FakeServer(vocab, port=port)
        try:
            while worker.status().state != "ready":  # polled every second, then loaded again
                assert time.monotonic() < deadline, worker.status()
                time.sleep(0.01)
        finally:
            back.close()
    finally:
        worker.stop()


def test_an_interrupted_update_keeps_what_was_held(vocab: Model, server: FakeServer) -> None:
    context = connect(vocab, server)
    context.update([[1, 2, 3]])
    stats = context.update([[1, 2, 3], [4, 5]], interrupt=lambda: True)
    assert not stats.completed and context.cells_used == 3 and context.reusable([[1, 2, 3, 4]]) == 3
