"""The remote engine on an OpenAI-compatible server (vLLM, SGLang, llama-server's /v1): the same
layout, sent as text to /v1/completions.

The prompt is the target's tokens as text (control tokens written out, the server's own BOS left to
it); the server tokenizes it again, which for the same vocabulary gives the same tokens but where
text splits differently at a segment's boundary. Such a server caches prefixes by itself (vLLM's
automatic prefix caching, llama-server's `cache_prompt`), so `update` is a warm-up request of one
token, as a preload is; its figures come from `usage` (`prompt_tokens_details.cached_tokens`, where
the server reports it) and the server's `timings` where it has them, else the request's wall time.
The answer comes as text: generated token ids are the local tokenization of it; a completion's
constrained first characters (token healing) go into the prompt as text and begin the answer.
No vocabulary check is possible here: the model setting must name the served model's GGUF file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..cache import ContextOverflowError, UpdateStats, common_prefix
from ..generate import GeneratedText, Generation, GenerationOptions, StopReason
from .cache import RemoteContext
from .client import RemoteError

log = logging.getLogger("coderag_daemon.engine.remote")


class OpenAIContext(RemoteContext):
    """An OpenAI-compatible server as the daemon's context (see the module)."""

    served: str = ""
    """The server's model id, sent with every request."""

    def connect(self) -> int:
        models = self.client.get("/models")
        data = models.get("data") if isinstance(models, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "id" not in data[0]:
            raise RemoteError(
                f"the engine server at {self.client.url} lists no model at /models: check that the URL is an "
                "OpenAI-compatible server's, ending in /v1"
            )
        first = data[0]
        self.served = str(first["id"])
        meta = first.get("meta")
        meta = meta if isinstance(meta, dict) else {}
        n_ctx = first.get("max_model_len") or meta.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx < self.options.n_ctx:
            raise RemoteError(
                f"the engine server's model {self.served} holds {n_ctx} tokens, fewer than the daemon's n_ctx "
                f"{self.options.n_ctx}: give the server a larger context or lower n_ctx"
            )
        n_vocab = meta.get("n_vocab")
        if isinstance(n_vocab, int) and n_vocab != self.model.n_vocab:
            raise RemoteError(
                f"the engine server at {self.client.url} runs {self.served}, not the configured model "
                f"{self.model.path.name} (n_vocab {n_vocab} vs {self.model.n_vocab}): set the model to a local copy "
                "of the server's GGUF file"
            )
        log.info("OpenAI-compatible engine server %s: %s", self.client.url, self.served)
        return self.options.n_ctx

    def clear(self) -> None:
        """The server's prefix cache is its own: the daemon only forgets what it counted on."""
        self._held = []

    def _prompt(self, tokens: list[int]) -> str:
        special = self.model.special
        if special.add_bos and tokens[:1] == [special.bos]:
            tokens = tokens[1:]  # the server puts its own
        return self.model.detokenize(tokens, special=True)

    def _body(self, prompt: str, max_tokens: int, options: GenerationOptions | None = None) -> dict[str, Any]:
        greedy = options is None or options.temperature <= 0
        body: dict[str, Any] = {
            "model": self.served,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0 if options is None else max(options.temperature, 0.0),
            "stream_options": {"include_usage": True},
        }
        if options is not None:
            body.update(seed=options.seed, top_p=1.0 if greedy else options.top_p)
        return body

    def update(
        self,
        segments: Sequence[Sequence[int]],
        interrupt: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
        seq: int = 0,
    ) -> UpdateStats:
        target = [t for segment in segments for t in segment]
        if not target:
            raise ValueError("the target context is empty")
        if len(target) > self.n_ctx:
            raise ContextOverflowError(
                f"the context needs {len(target)} tokens but n_ctx is {self.n_ctx}; trim it or raise n_ctx"
            )
        self._target = target
        p = common_prefix(self._held, target)
        if p == len(target) == len(self._held):
            self._last = UpdateStats(len(target), p, p, "none")
            return self._last
        stats = UpdateStats(len(target), p, p, "truncate" if p else "reset")
        t0 = time.perf_counter()
        stream = self.client.stream("/completions", self._body(self._prompt(target), 1))
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        try:
            for event in stream.events():
                if interrupt is not None and interrupt():
                    stats.completed = False
                    self._held = self._held[:p]
                    return stats
                if event is None:
                    continue
                usage = event.get("usage") or usage
                timings = event.get("timings") or timings
        finally:
            stream.close()
        if not usage:
            raise RemoteError(f"the engine server at {self.client.url} ended its answer without usage figures")
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", p))
        stats.restored_from = min(cached, len(target))
        stats.tokens_reprocessed = max(int(usage.get("prompt_tokens", len(target))) - cached, 0)
        stats.decode_ms = float(timings.get("prompt_ms", (time.perf_counter() - t0) * 1000))
        stats.restore_kind = "truncate" if stats.restored_from else "reset"
        self._held = list(target)
        self._last = stats
        return stats

    def generate(
        self,
        options: GenerationOptions,
        *,
        cancelled: Callable[[], bool] | None = None,
        on_text: Callable[[str], None] | None = None,
        should_stop: Callable[[str], int | None] | None = None,
        constrain: Callable[[bytes], np.ndarray | None] | None = None,
    ) -> Generation:
        t0 = time.perf_counter()
        deadline = t0 + options.time_budget_s if options.time_budget_s is not None else None
        out = GeneratedText(self.model, options, on_text, should_stop)
        healed = self._healed(constrain) if constrain is not None else b""
        reason: StopReason | None = out.add_bytes(healed) if healed else None
        first_ms: float | None = None
        passes = 0
        if reason is None:
            prompt = self._prompt(self._target) + healed.decode("utf-8", "replace")
            stream = self.client.stream("/completions", self._body(prompt, options.max_tokens, options))
            try:
                for event in stream.events():  # after the finish reason, the usage figures
                    if reason is None and cancelled is not None and cancelled():
                        reason = "cancelled"
                    if reason is None and deadline is not None and time.perf_counter() > deadline:
                        reason = "time"
                    if reason in ("cancelled", "time"):
                        break
                    if event is None:
                        continue
                    passes = int((event.get("usage") or {}).get("completion_tokens", passes))
                    choices = event.get("choices") or []
                    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
                    if reason is None and (text := choice.get("text")):
                        first_ms = first_ms if first_ms is not None else (time.perf_counter() - t0) * 1000
                        if (reason := out.add_bytes(str(text).encode("utf-8"))) is not None:
                            break
                    if reason is None and choice.get("finish_reason") is not None:
                        reason = "max_tokens" if choice["finish_reason"] == "length" else "eog"
            finally:
                stream.close()
        text = out.finish(reason or "max_tokens")
        generated = self.model.tokenize(text)
        self._held = self._target + generated
        return Generation(text, generated, reason or "max_tokens", first_ms, (time.perf_counter() - t0) * 1000, passes)

    def _healed(self, constrain: Callable[[bytes], np.ndarray | None]) -> bytes:
        """The text a completion must begin with (token healing), read off the constraint: the
        shortest start of an allowed token after which anything is allowed."""
        allowed = constrain(b"")
        if allowed is None:
            return b""
        for token in allowed:
            data = self.model.token_bytes(int(token))
            if constrain(data) is None:
                return next(data[:k] for k in range(1, len(data) + 1) if constrain(data[:k]) is None)
        return b""
