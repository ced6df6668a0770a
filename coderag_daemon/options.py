"""The daemon's settings: one dataclass field each, from flags, initializationOptions or
workspace/didChangeConfiguration. Bad values never stop the daemon: they are reported and the
default (or the previous value) is kept."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from typing import Any

from pathspec import GitIgnoreSpec

from .engine import EngineOptions
from .engine.options import MIB
from .prompting.prompts import PromptOptions


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class Options:
    model: str | None = _setting(None, "Path of a GGUF model (default: the embedded default model, Qwen2.5-Coder-0.5B-Instruct).")
    n_ctx: int = _setting(12288, "Context window in tokens (files + request + answer).")
    threads: int = _setting(0, "CPU threads for the model; 0 = all cores.")
    checkpoint_interval: int = _setting(512, "Tokens between cache checkpoints (also taken at every file boundary).")
    checkpoint_memory_mib: int = _setting(512, "Memory for checkpoint data in MiB; beyond it, checkpoints are evicted keeping coverage spread.")
    preload_delay_ms: int = _setting(400, "Quiet time after an edit before the cache is brought up to date in the background.")
    context_tokens: int = _setting(9728, "Token budget of the file context (at most n_ctx less room for a request and its answer); least recently used files leave first beyond it.")
    max_completion_tokens: int = _setting(64, "Longest inline completion, in tokens.")
    max_chat_tokens: int = _setting(512, "Longest chat answer, in tokens.")
    completion_time_budget_ms: int = _setting(3000, "An inline completion stops generating after this long and returns what it has.")
    completion_wait_tokens: int = _setting(128, "Tokens of file context not cached yet that an inline completion decodes before its own request; the files beyond are left out of it and preloaded for the next one (after a cold start, an edit far up the context, a checkout). A large value makes every completion wait for the whole context.")
    retrieval_tokens: int = _setting(768, "Tokens of code retrieved from the workspace index into a chat request (after the cached context); 0 turns retrieval off.")
    ignore_globs: list[str] = field(default_factory=list, metadata={"help": "Extra gitignore-style patterns for files that never enter the context."})
    max_file_kib: int = _setting(512, "Files larger than this are skipped.")

    def engine_options(self) -> EngineOptions:
        return EngineOptions(n_ctx=self.n_ctx, n_threads=self.threads, checkpoint_interval=self.checkpoint_interval,
                             checkpoint_budget_bytes=self.checkpoint_memory_mib * MIB)

    def prompt_options(self) -> PromptOptions:
        return PromptOptions.for_context(self.n_ctx, self.retrieval_tokens)


# Bounds that keep a typo from exhausting memory or stalling the daemon.
_LIMITS: dict[str, tuple[int, int]] = {
    "n_ctx": (512, 131072), "threads": (0, 256), "checkpoint_interval": (16, 65536),
    "checkpoint_memory_mib": (0, 65536), "preload_delay_ms": (0, 60000), "context_tokens": (256, 131072),
    "max_completion_tokens": (1, 4096), "max_chat_tokens": (1, 16384), "completion_time_budget_ms": (100, 60000),
    "completion_wait_tokens": (0, 131072),
    "retrieval_tokens": (0, 16384),
    "max_file_kib": (1, 65536),
}

# Settings arrive from editors in camelCase; both spellings are accepted.
_ALIASES = {
    "modelPath": "model", "model_path": "model", "nCtx": "n_ctx", "checkpointInterval": "checkpoint_interval",
    "checkpointMemoryMiB": "checkpoint_memory_mib", "checkpointMemoryMib": "checkpoint_memory_mib",
    "preloadDelayMs": "preload_delay_ms", "contextTokens": "context_tokens",
    "maxCompletionTokens": "max_completion_tokens", "maxChatTokens": "max_chat_tokens",
    "completionTimeBudgetMs": "completion_time_budget_ms", "completionWaitTokens": "completion_wait_tokens",
    "retrievalTokens": "retrieval_tokens",
    "ignoreGlobs": "ignore_globs", "maxFileKiB": "max_file_kib",
    "maxFileKib": "max_file_kib",
}


def merge(base: Options, raw: Any) -> tuple[Options, list[str]]:
    """Apply editor-supplied settings on top of `base`; return the result and one message per
    rejected entry (unknown names, wrong types, out-of-range values)."""
    if raw is None:
        return base, []
    if not isinstance(raw, dict):
        return base, [f"settings must be an object, got {type(raw).__name__}; keeping the current ones"]
    known = {f.name: f for f in fields(Options)}
    changes: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in raw.items():
        name = _ALIASES.get(key, key)
        if name not in known:
            errors.append(f"unknown setting {key!r} ignored")
            continue
        problem = check_setting(name, value)
        if problem:
            errors.append(f"setting {key!r}: {problem}; keeping {getattr(base, name)!r}")
        else:
            changes[name] = value
    return dataclasses.replace(base, **changes), errors


def check_setting(name: str, value: Any) -> str | None:
    """Why `value` is not acceptable for setting `name`, or None."""
    if name == "model":
        return None if value is None or (isinstance(value, str) and value.strip()) else "must be a file path or null"
    if name == "ignore_globs":
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return "must be a list of strings"
        try:
            GitIgnoreSpec.from_lines(value)
        except (ValueError, re.error) as exc:  # pathspec's pattern errors are ValueErrors
            return f"not a valid gitignore pattern: {exc}"
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be a whole number, got {value!r}"
    low, high = _LIMITS[name]
    return None if low <= value <= high else f"must be between {low} and {high}, got {value}"
