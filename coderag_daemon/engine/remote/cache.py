"""The remote engine's context: the same methods the jobs use on a `ContextCache`, with the KV cache
in a llama-server slot.

`update` records the target and brings the server's slot to it with a warm-up request
(`n_predict: 0`, `cache_prompt`): the server keeps the prefix its slot shares with the prompt and
decodes the rest, and the figures reported (tokens reprocessed and kept, prefill ms) are the
server's own `timings`. A preload is exactly that request. `generate` then sends the same prompt
with the tokens to write: the server finds it cached and decodes only its last token again. Should
the slot have lost the prompt in between (the server restarted, another client took the slot), what
the generation's request decoded again is added to the update's figures, so they stay what the
server did. An interrupted update closes its stream; the server keeps what it decoded so far.

The daemon tracks which tokens the slot holds (the last prompt and the tokens generated after it),
so `reusable` and `cached_prefix` answer without asking. The slot holds one sequence: the chat and
the completions take turns in it, as in a one-sequence local cache. A server has no state to save
here (persistence is off for a remote engine).
"""

from __future__ import annotations

import codecs
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..cache import ContextOverflowError, UpdateStats, common_prefix
from ..checkpoints import CheckpointStore
from ..generate import GeneratedText, Generation, GenerationOptions, StopReason
from ..model import Model
from .client import RemoteError, ServerClient
from .options import RemoteOptions

log = logging.getLogger("coderag_daemon.engine.remote")

HEALING_BIAS = 1000.0
"""Added to the logits of the tokens a constrained step allows: the server's greedy pick is then the
best of them (a model's logits span far less than this)."""
_PROBE = "def probe(x):\n    return x + 1  # é\n"
"""Tokenized here and by the server: the same ids mean the same vocabulary."""


class RemoteContext:
    """A llama-server slot as the daemon's context (see the module). Used from the model worker."""

    strategy = "remote"
    n_seq = 1

    def __init__(self, model: Model, options: RemoteOptions, client: ServerClient | None = None) -> None:
        self.model = model
        self.options = options
        self.client = client or ServerClient(options)
        self.checkpoints = CheckpointStore(0)
        """None: the server keeps its own (llama-server's --ctx-checkpoints)."""
        self._held: list[int] = []
        """What the slot holds as far as the daemon knows: the last prompt and the tokens generated after it."""
        self._target: list[int] = []
        self._last: UpdateStats | None = None
        self._closed = False
        self._vocab: list[tuple[int, bytes]] | None = None
        self.n_ctx = self.connect()

    # --- the server -----------------------------------------------------------------------------------

    def connect(self) -> int:
        """Check that the server runs the configured model with room for the daemon's context; its
        slot's context size. Raises RemoteError (RemoteUnavailable when it cannot be reached)."""
        props = self.client.get("/props")
        if not isinstance(props, dict):
            raise RemoteError(f"the engine server at {self.client.url} answered /props with {type(props).__name__}")
        settings = props.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        slots = props.get("total_slots")
        if not isinstance(n_ctx, int) or not isinstance(slots, int):
            raise RemoteError(
                f"the engine server at {self.client.url} is not llama-server (its /props has no context size or "
                "slots): for an OpenAI-compatible server, give its URL ending in /v1"
            )
        if self.options.slot >= slots:
            raise RemoteError(
                f"the engine slot is {self.options.slot} but the server at {self.client.url} has {slots} slot(s): "
                "start llama-server with -np greater than the slot, or pick a smaller one"
            )
        if n_ctx < self.options.n_ctx:
            raise RemoteError(
                f"the engine server's slots hold {n_ctx} tokens, fewer than the daemon's n_ctx {self.options.n_ctx}: "
                f"start llama-server with -c {self.options.n_ctx * slots} or more (its -c is shared by its {slots} "
                "slot(s)), or lower n_ctx"
            )
        self._check_model(props)
        log.info(
            "engine server %s: %s, %d slot(s) of %d tokens, using slot %d",
            self.client.url,
            props.get("model_path", "?"),
            slots,
            n_ctx,
            self.options.slot,
        )
        return self.options.n_ctx

    def _check_model(self, props: dict[str, Any]) -> None:
        """The server's vocabulary must be the local model's: the prompts are its token ids."""
        served = str(props.get("model_path", "?"))
        ids = self.client.post("/tokenize", {"content": _PROBE, "add_special": False})
        tokens = ids.get("tokens") if isinstance(ids, dict) else None
        mine = self.model.tokenize(_PROBE)
        if tokens != mine:
            raise RemoteError(
                f"the engine server at {self.client.url} runs {served}, whose vocabulary is not that of the "
                f"configured model {self.model.path.name}: set the model to a local copy of the server's GGUF file"
            )
        models = self.client.get("/v1/models")
        meta = (models.get("data") or [{}])[0].get("meta", {}) if isinstance(models, dict) else {}
        mine_meta = {
            "n_vocab": self.model.n_vocab,
            "n_ctx_train": _int(self.model.metadata.get(f"{self.model.arch}.context_length")),
            "n_embd": _int(self.model.metadata.get(f"{self.model.arch}.embedding_length")),
        }
        differ = [k for k, v in mine_meta.items() if k in meta and v is not None and meta[k] != v]
        if differ:
            raise RemoteError(
                f"the engine server at {self.client.url} runs {served}, not the configured model "
                f"{self.model.path.name} ({', '.join(f'{k} {meta[k]} vs {mine_meta[k]}' for k in differ)}): set the "
                "model to a local copy of the server's GGUF file"
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self.client.close()

    def server_restarted(self) -> None:
        """The server came back after it was down: its slot holds nothing of the daemon's any more, so
        a completion does not count on it (`reusable`). From any thread (one assignment)."""
        self._held = []

    # --- what the jobs use --------------------------------------------------------------------------

    @property
    def tokens(self) -> list[int]:
        return self._held

    @property
    def cells_used(self) -> int:
        return len(self._held)

    def cached_prefix(self, segments: Sequence[Sequence[int]], seq: int | None = None) -> int:
        return common_prefix(self._held, list(itertools.chain.from_iterable(segments)))

    def reusable(self, segments: Sequence[Sequence[int]], seq: int = 0) -> int:
        return self.cached_prefix(segments)

    def drop(self, seq: int) -> None:
        """One slot, one sequence: nothing of another to free."""

    def clear(self) -> None:
        """Forget the slot's tokens: the next request decodes its whole prompt again."""
        try:
            self.client.post(f"/slots/{self.options.slot}?action=erase", {})
        except RemoteError as exc:
            log.info("the server's slot was not erased (%s); its tokens are replaced by the next prompt", exc)
        self._held = []

    def save_state(self) -> bytes:
        raise RemoteError("a remote engine's cache lives in its server and is not saved by the daemon")

    def load_state(self, payload: bytes) -> int:
        raise RemoteError("a remote engine's cache lives in its server and is not loaded by the daemon")

    def update(
        self,
        segments: Sequence[Sequence[int]],
        interrupt: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
        seq: int = 0,
    ) -> UpdateStats:
        """Bring the slot to the concatenated segments (the module says how; `seq` is the slot's one)."""
        target = list(itertools.chain.from_iterable(segments))
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
        body = {**self._request(target), "n_predict": 0, "return_progress": True}
        stream = self.client.stream("/completion", body)
        final: dict[str, Any] | None = None
        try:
            for event in stream.events():
                if interrupt is not None and interrupt():
                    stats.completed = False
                    break
                if event is None:
                    continue
                done = event.get("prompt_progress")
                if isinstance(done, dict) and progress is not None:
                    progress(int(done.get("processed", 0)), int(done.get("total", len(target))))
                if event.get("stop"):
                    final = event
                    break
        finally:
            stream.close()
        if not stats.completed:
            self._held = self._held[:p]  # the server keeps what it decoded; the daemon counts on the prefix
            return stats
        timings = _timings(final, self.client.url)
        stats.restored_from = int(timings.get("cache_n", p))
        stats.tokens_reprocessed = int(timings.get("prompt_n", len(target) - p))
        stats.decode_ms = float(timings.get("prompt_ms", 0.0))
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
        """Generate after the last update's target on the server, with the local loop's checks
        (`GeneratedText`): the same stop rules, cancellation between tokens (the stream is closed).
        Constrained first tokens are decided one request per token (`HEALING_BIAS`), the rest streamed."""
        t0 = time.perf_counter()
        deadline = t0 + options.time_budget_s if options.time_budget_s is not None else None
        out = GeneratedText(self.model, options, on_text, should_stop)
        first_ms: float | None = None
        reason: StopReason | None = None
        passes = 0
        while reason is None and len(out.tokens) < options.max_tokens:
            if cancelled is not None and cancelled():
                reason = "cancelled"
                break
            allowed = constrain(out.written) if constrain is not None else None
            body = {**self._request(self._target + out.tokens, options), "return_tokens": True}
            if allowed is not None:
                body.update(n_predict=1, logit_bias=[[int(t), HEALING_BIAS] for t in allowed])
                final = self.client.post("/completion", body)
                tokens = final.get("tokens") if isinstance(final, dict) else None
                if not isinstance(tokens, list):
                    raise RemoteError(f"the engine server at {self.client.url} answered a completion without tokens")
                reason = _add_all(out, tokens)
            else:
                body["n_predict"] = options.max_tokens - len(out.tokens)
                reason, final = self._stream(body, out, cancelled, deadline)
            if first_ms is None and out.tokens:
                first_ms = (time.perf_counter() - t0) * 1000
            self._held = self._target + out.tokens
            if reason is not None:
                break
            timings = _timings(final, self.client.url)
            if passes == 0:
                self._count_prefill(timings)
            passes += int(timings.get("predicted_n", 0))
            if final.get("stop_type") == "eos":
                reason = "eog"
            elif allowed is None:
                reason = "max_tokens"
        text = out.finish(reason or "max_tokens")
        return Generation(text, out.tokens, reason or "max_tokens", first_ms, (time.perf_counter() - t0) * 1000, passes)

    def _stream(
        self,
        body: dict[str, Any],
        out: GeneratedText,
        cancelled: Callable[[], bool] | None,
        deadline: float | None,
    ) -> tuple[StopReason | None, dict[str, Any] | None]:
        """Stream tokens into `out` until it, the caller or the server stops: the reason (None: the
        server's, in the final event returned)."""
        stream = self.client.stream("/completion", body)
        predicted = 0
        try:
            for event in stream.events():
                if cancelled is not None and cancelled():
                    return "cancelled", None
                if deadline is not None and time.perf_counter() > deadline:
                    return "time", None
                if event is None:
                    continue
                tokens = [int(t) for t in event.get("tokens") or []]
                if event.get("content") and not tokens:
                    raise RemoteError(
                        f"the engine server at {self.client.url} sends no token ids with its text (return_tokens): "
                        "use a llama-server build from 2025 or later"
                    )
                count = event.get("tokens_predicted")
                if isinstance(count, int) and tokens and count - predicted > len(tokens):
                    tokens = self._unsent(event, tokens, count - predicted - len(tokens)) + tokens
                predicted = count if isinstance(count, int) else predicted + len(tokens)
                if (reason := _add_all(out, tokens)) is not None:
                    return reason, None
                if event.get("stop"):
                    return None, event
        finally:
            stream.close()
        return None, None

    def _unsent(self, event: dict[str, Any], tokens: list[int], missing: int) -> list[int]:
        """The `missing` tokens before `tokens` that llama-server did not stream: it sends no event
        while its text's last bytes start a character they do not finish, and the next event's text
        carries those tokens' bytes, decoded with invalid bytes replaced. The first `missing` tokens
        whose bytes, with `tokens`', decode to the event's text are taken: the same text; the same
        ids but where the text has invalid UTF-8, which several byte tokens spell alike."""
        text = str(event.get("content", ""))
        known = b"".join(self.model.token_bytes(t) for t in tokens)
        spelled = _spell(self._vocabulary(), known, text, missing)
        if spelled is None:
            raise RemoteError(
                f"the engine server at {self.client.url} streamed text that no {missing} token(s) before its own spell"
            )
        return spelled

    def _vocabulary(self) -> list[tuple[int, bytes]]:
        """Every token and its bytes, parts of characters first (what an unsent token mostly is); built once."""
        if self._vocab is None:
            pieces = [(token, self.model.token_bytes(token)) for token in range(self.model.n_vocab)]
            self._vocab = sorted(pieces, key=lambda piece: _is_text(piece[1]))
        return self._vocab

    def _count_prefill(self, timings: dict[str, Any]) -> None:
        """A generation request decodes its prompt's last token again; anything more means the slot
        lost the prompt after the update, and goes into the update's figures."""
        extra = int(timings.get("prompt_n", 1)) - 1
        if extra > 0 and self._last is not None:
            log.info("the engine server decoded %d prompt tokens again for the generation", extra)
            self._last.tokens_reprocessed += extra
            self._last.decode_ms += float(timings.get("prompt_ms", 0.0))

    def _request(self, prompt: list[int], options: GenerationOptions | None = None) -> dict[str, Any]:
        """The common part of a /completion request: the prompt as token ids, cached in this daemon's slot."""
        body: dict[str, Any] = {"prompt": prompt, "cache_prompt": True, "id_slot": self.options.slot}
        if options is not None:
            greedy = options.temperature <= 0
            body.update(
                temperature=max(options.temperature, 0.0),
                top_k=1 if greedy else options.top_k,
                top_p=1.0 if greedy else options.top_p,
                min_p=0.0,
                seed=options.seed,
                samplers=["top_k", "temperature"] if greedy else ["top_k", "top_p", "temperature"],
            )
        return body


def _add_all(out: GeneratedText, tokens: list[Any]) -> StopReason | None:
    """Feed `tokens` to `out` until one ends the generation; the reason, or None."""
    for token in tokens:
        if (reason := out.add(int(token))) is not None:
            return reason
    return None


def _spell(candidates: list[tuple[int, bytes]], known: bytes, text: str, n: int, head: bytes = b"") -> list[int] | None:
    """`n` of the candidate tokens whose bytes, after `head` and before `known`, decode to `text`
    (invalid bytes replaced), or None. A choice is pursued only while what it decodes to so far
    begins `text`."""
    if n == 0:
        return [] if (head + known).decode("utf-8", "replace") == text else None
    for token, data in candidates:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if (
            text.startswith(decoder.decode(head + data))
            and (rest := _spell(candidates, known, text, n - 1, head + data)) is not None
        ):
            return [token, *rest]
    return None


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _timings(final: dict[str, Any] | None, url: str) -> dict[str, Any]:
    """The final event's timings; a stream that ended without one was cut short."""
    if final is None:
        raise RemoteError(f"the engine server at {url} ended its answer early (a truncated stream): check its log")
    timings = final.get("timings")
    return timings if isinstance(timings, dict) else {}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
