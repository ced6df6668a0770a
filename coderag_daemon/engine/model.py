"""Load a GGUF model with clear errors; tokenizer, special tokens and the model's kind.

llama.cpp reports a bad file with a NULL pointer and a log line; we check the file first so the user
reads which file is wrong and what to do, not a traceback.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import llama_cpp
from gguf import GGUFReader

ModelKind = Literal["dense", "swa", "recurrent", "hybrid"]

log = logging.getLogger("coderag_daemon.engine")
_llama_log = logging.getLogger("coderag_daemon.llama_cpp")
# ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT (continuation of the previous line).
_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS


class ModelError(RuntimeError):
    """The model file cannot be used; the message names the file and what to do."""


@llama_cpp.llama_log_callback
def _route_llama_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    # llama.cpp logs a lot at INFO; that goes to DEBUG here.
    _llama_log.log(_LEVELS.get(level, logging.DEBUG), "%s", text.decode("utf-8", "replace").rstrip())


_backend_ready = False


def _init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        llama_cpp.llama_log_set(_route_llama_log, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _backend_ready = True


def amx_compiled() -> bool:
    """True when this llama.cpp build has AMX kernels, which crash on some CPUs for quantized models."""
    info = llama_cpp.llama_print_system_info().decode()
    return "AMX_INT8 = 1" in info or "AMX = 1" in info


def check_gguf(path: Path) -> GGUFReader:
    """Raise ModelError unless `path` is a complete GGUF file."""
    if not path.exists():
        raise ModelError(
            f"model file not found: {path}. Give the path of a .gguf file (--model PATH) "
            "or install the default model: coderag-daemon model install"
        )
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    if magic != b"GGUF":
        raise ModelError(
            f"{path} is not a GGUF model (it starts with {magic!r}, expected b'GGUF'). "
            "Convert it with llama.cpp's convert_hf_to_gguf.py or pick a .gguf file"
        )
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # gguf raises assorted errors on damaged headers
        raise ModelError(f"{path} is a damaged or truncated GGUF file ({exc}); download or assemble it again") from exc
    size = path.stat().st_size
    needed = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    if needed > size:
        raise ModelError(
            f"{path} is a damaged or truncated GGUF file: its tensors need {needed} bytes but it has {size}; "
            "download or assemble it again"
        )
    return reader


@dataclass(frozen=True)
class SpecialTokens:
    bos: int
    eos: int
    add_bos: bool
    fim_prefix: int
    fim_suffix: int
    fim_middle: int
    fim_pad: int
    fim_repo: int
    fim_sep: int

    @property
    def has_fim(self) -> bool:
        return min(self.fim_prefix, self.fim_suffix, self.fim_middle) >= 0


class Model:
    """A loaded GGUF model: weights, vocabulary, metadata. Contexts are created by the cache.

    With `vocab_only`, the vocabulary and metadata alone (no weights, milliseconds to load): what a
    remote engine needs to lay prompts out as the server's model reads them."""

    def __init__(self, path: str | Path, *, vocab_only: bool = False) -> None:
        self.ptr = None
        self.path = Path(path).expanduser().resolve()
        reader = check_gguf(self.path)
        self.metadata = _string_metadata(reader)
        del reader
        _init_backend()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
        params.vocab_only = vocab_only
        if amx_compiled() and not vocab_only:
            # Weight repacking routes quantized matmuls through the AMX kernels; skip it.
            log.warning("llama.cpp was built with AMX kernels; loading without extra buffer types to avoid them")
            params.use_extra_bufts = False
        self.ptr = llama_cpp.llama_model_load_from_file(str(self.path).encode(), params)
        if not self.ptr:
            raise ModelError(
                f"llama.cpp could not load {self.path} "
                "(unsupported architecture or damaged file; see the log for llama.cpp's reason)"
            )
        self.vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(self.ptr)
        self.n_swa = llama_cpp.llama_model_n_swa(self.ptr)
        self.arch = self.metadata.get("general.architecture", "unknown")
        self.kind: ModelKind = (
            "hybrid"
            if llama_cpp.llama_model_is_hybrid(self.ptr)
            else "recurrent"
            if llama_cpp.llama_model_is_recurrent(self.ptr)
            else "swa"
            if self.n_swa > 0
            else "dense"
        )
        v = self.vocab
        self.special = SpecialTokens(
            bos=llama_cpp.llama_vocab_bos(v),
            eos=llama_cpp.llama_vocab_eos(v),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(v)),
            fim_prefix=llama_cpp.llama_vocab_fim_pre(v),
            fim_suffix=llama_cpp.llama_vocab_fim_suf(v),
            fim_middle=llama_cpp.llama_vocab_fim_mid(v),
            fim_pad=llama_cpp.llama_vocab_fim_pad(v),
            fim_repo=llama_cpp.llama_vocab_fim_rep(v),
            fim_sep=llama_cpp.llama_vocab_fim_sep(v),
        )
        self.chat_template: str | None = self.metadata.get("tokenizer.chat_template")
        self.name = self.metadata.get("general.name") or self.path.stem
        log.info(
            "loaded %s%s (%s, kind %s, n_swa %d, vocab %d)",
            self.path.name,
            " (vocabulary only)" if vocab_only else "",
            self.arch,
            self.kind,
            self.n_swa,
            self.n_vocab,
        )

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        self.close()

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Tokens of `text`, without BOS. `special` parses control-token text; file contents never do,
        so a file that contains '<|endoftext|>' cannot inject a control token."""
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, n_max, False, special)
        if n < 0:
            buf = (llama_cpp.llama_token * -n)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, -n, False, special)
        return list(buf[:n])

    def token_bytes(self, token: int, *, special: bool = False) -> bytes:
        """The bytes a token stands for (may be part of a UTF-8 character)."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        return buf.raw[:n]

    def detokenize(self, tokens: list[int], *, special: bool = False) -> str:
        return b"".join(self.token_bytes(t, special=special) for t in tokens).decode("utf-8", "replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def token_id(self, text: str) -> int | None:
        """The id of a special token given by its text (e.g. '<|file_sep|>'), or None."""
        tokens = self.tokenize(text, special=True)
        return tokens[0] if len(tokens) == 1 and llama_cpp.llama_vocab_is_control(self.vocab, tokens[0]) else None


def _string_metadata(reader: GGUFReader) -> dict[str, str]:
    """Scalar string and integer metadata, and number arrays of at most one entry per layer (head
    counts, the sliding-window layout) as their list's text; the vocabulary's arrays are left out."""
    out: dict[str, str] = {}
    for name, field in reader.fields.items():
        if (
            len(field.types) == 2
            and field.types[1].name not in ("STRING", "ARRAY")
            and 0 < len(field.data) <= _MAX_LAYERS
        ):
            out[name] = str([field.parts[i][0].item() for i in field.data])
            continue
        if len(field.types) != 1 or not field.data:
            continue
        value = field.parts[field.data[0]]
        if field.types[0].name == "STRING":
            out[name] = bytes(value).decode("utf-8", "replace")
        else:
            out[name] = str(value[0]) if len(value) == 1 else str(list(value))
    return out
