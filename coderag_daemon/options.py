"""The daemon's settings as one dataclass, from flags, initializationOptions or
workspace/didChangeConfiguration. Bad values never stop the daemon: they are reported and the
default (or the previous value) is kept.

The fields' defaults, the checks of `merge` and what a change `reloads` come from the table in
settings.py; the fields are spelled out (and checked against the table at import) so that type
checkers see them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from .engine import EngineOptions
from .engine.options import MIB
from .engine.remote.options import RemoteOptions
from .prompting.prompts import PromptOptions
from .settings import BY_ACCEPTED_NAME, BY_NAME, SETTINGS, Reload, check_setting, default_of

__all__ = ["Options", "Reload", "check_setting", "merge", "reloads"]


def _setting(name: str) -> Any:
    default = BY_NAME[name].default
    return field(default_factory=lambda: default_of(name)) if isinstance(default, tuple) else field(default=default)


@dataclass
class Options:
    model: str | None = _setting("model")
    n_ctx: int = _setting("n_ctx")
    threads: int = _setting("threads")
    checkpoint_interval: int = _setting("checkpoint_interval")
    checkpoint_memory_mib: int = _setting("checkpoint_memory_mib")
    preload_delay_ms: int = _setting("preload_delay_ms")
    context_tokens: int = _setting("context_tokens")
    max_completion_tokens: int = _setting("max_completion_tokens")
    max_chat_tokens: int = _setting("max_chat_tokens")
    completion_time_budget_ms: int = _setting("completion_time_budget_ms")
    completion_wait_tokens: int = _setting("completion_wait_tokens")
    retrieval_tokens: int = _setting("retrieval_tokens")
    completion_definition_tokens: int = _setting("completion_definition_tokens")
    ignore_globs: list[str] = _setting("ignore_globs")
    max_file_kib: int = _setting("max_file_kib")
    persist_cache: bool = _setting("persist_cache")
    persist_interval_ms: int = _setting("persist_interval_ms")
    persist_budget_mib: int = _setting("persist_budget_mib")
    engine: str = _setting("engine")
    engine_api_key: str = _setting("engine_api_key")
    engine_slot: int = _setting("engine_slot")

    @property
    def remote(self) -> bool:
        """The model runs in a server (`engine` is its URL), not in the daemon."""
        return self.engine != "local"

    def engine_options(self) -> EngineOptions:
        """The local engine's options, or a remote engine's (a `RemoteOptions`) when `engine` is a URL."""
        local = EngineOptions(
            n_ctx=self.n_ctx,
            n_threads=self.threads,
            checkpoint_interval=self.checkpoint_interval,
            checkpoint_budget_bytes=self.checkpoint_memory_mib * MIB,
        )
        if self.remote:
            return RemoteOptions(**vars(local), url=self.engine, api_key=self.engine_api_key, slot=self.engine_slot)
        return local

    def prompt_options(self) -> PromptOptions:
        return PromptOptions.for_context(self.n_ctx, self.retrieval_tokens)


_ANNOTATIONS = {"int": "int", "bool": "bool", "path": "str | None", "globs": "list[str]", "text": "str"}
if [(f.name, f.type) for f in fields(Options)] != [(s.name, _ANNOTATIONS[s.kind]) for s in SETTINGS]:
    raise TypeError("Options must have one field per entry of settings.SETTINGS, in its order and of its kind")


def merge(base: Options, raw: Any) -> tuple[Options, list[str]]:
    """Apply editor-supplied settings on top of `base`; return the result and one message per
    rejected entry (unknown names, wrong types, out-of-range values)."""
    if raw is None:
        return base, []
    if not isinstance(raw, dict):
        return base, [f"settings must be an object, got {type(raw).__name__}; keeping the current ones"]
    changes: dict[str, Any] = {}
    errors: list[str] = []
    for key, value in raw.items():
        setting = BY_ACCEPTED_NAME.get(key)
        if setting is None:
            errors.append(f"unknown setting {key!r} ignored")
            continue
        problem = setting.check(value)
        if problem:
            errors.append(f"setting {key!r}: {problem}; keeping {getattr(base, setting.name)!r}")
        else:
            changes[setting.name] = value
    return dataclasses.replace(base, **changes), errors


def reloads(old: Options, new: Options) -> set[Reload]:
    """What a change from `old` to `new` settings has to rebuild (see `Reload`)."""
    return {reload for s in SETTINGS if getattr(old, s.name) != getattr(new, s.name) for reload in s.reloads}
