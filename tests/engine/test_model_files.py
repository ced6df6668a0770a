"""Bad model files give a clear error naming the file and what to do."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from coderag_daemon import default_model
from coderag_daemon.engine import Model, ModelError
from fixtures.tiny_models import tiny_model_path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found: .*nope\.gguf.*--model"):
        Model(tmp_path / "nope.gguf")


def test_not_a_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelError, match=r"model\.bin is not a GGUF model"):
        Model(bad)


def test_truncated_gguf(tmp_path: Path) -> None:
    data = tiny_model_path("dense").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ModelError, match=r"cut\.gguf is a damaged or truncated GGUF"):
        Model(cut)


def test_damaged_header(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(ModelError, match=r"bad\.gguf is a damaged or truncated GGUF"):
        Model(bad)


def test_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a file"):
        Model(tmp_path)


def _packaged(tmp_path: Path, parts: list[bytes], sha: str) -> default_model.PackagedModel:
    paths = []
    for i, data in enumerate(parts):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(data)
        paths.append(p)
    return default_model.PackagedModel("test-model", "test.gguf", sha, "pip install test-model", lambda: paths)


def test_assembles_verifies_and_remembers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERAG_MODELS_DIR", str(tmp_path / "models"))
    parts = [b"GGUF" + b"a" * 100, b"b" * 50, b"c" * 7]
    model = _packaged(tmp_path, parts, hashlib.sha256(b"".join(parts)).hexdigest())
    path = default_model.install(model, progress=lambda _: None)
    assert path.read_bytes() == b"".join(parts)
    assert default_model.is_installed(model)
    path.write_bytes(b"changed")  # a later change is noticed by size/mtime
    assert not default_model.is_installed(model)


def test_checksum_mismatch_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERAG_MODELS_DIR", str(tmp_path / "models"))
    model = _packaged(tmp_path, [b"GGUF", b"x"], "0" * 64)
    with pytest.raises(default_model.ModelInstallError, match="sha256 .* expected 0000.*pip install test-model"):
        default_model.install(model, progress=lambda _: None)
    assert not any((tmp_path / "models").iterdir())


def test_missing_part_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODERAG_MODELS_DIR", str(tmp_path / "models"))
    model = _packaged(tmp_path, [b"GGUF"], "0" * 64)
    model.parts()[0].unlink()
    with pytest.raises(default_model.ModelInstallError, match="missing part files.*pip install test-model"):
        default_model.install(model, progress=lambda _: None)
