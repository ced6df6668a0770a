"""llama-server as a benchmark side: build it, launch it, and drive it as llama.vscode does.

The server is built from the llama.cpp sources that llama-cpp-python's sdist vendors, for the same
llama-cpp-python version the daemon runs on, so both sides run the same llama.cpp (a prebuilt
server would bring its own llama.cpp release). The build disables ggml's AMX kernels, which crash on
some CPUs for quantized models, and builds only the server target. It runs once per checkout into
`.build/` and is reused afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .pypi import pip_download

BUILD_ROOT = Path(__file__).resolve().parents[2] / ".build"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_OPTIONS = [
    "-DCMAKE_BUILD_TYPE=Release",
    f"-DCMAKE_C_FLAGS={NO_AMX}",
    f"-DCMAKE_CXX_FLAGS={NO_AMX}",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
]


@dataclass(frozen=True)
class ServerBuild:
    """A llama-server binary built from the llama.cpp vendored by llama-cpp-python `version`."""

    version: str = field(default_factory=lambda: metadata.version("llama-cpp-python"))

    @property
    def root(self) -> Path:
        return BUILD_ROOT / f"llama-server-{self.version}-noamx"

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "llama-server"

    @property
    def info(self) -> dict[str, Any]:
        return json.loads((self.root / "build_info.json").read_text())

    def ready(self) -> bool:
        return self.binary.is_file() and (self.root / "build_info.json").is_file()

    def ensure(self, log: Any = print) -> Path:
        """Build once (several minutes); later calls return the binary at once."""
        if self.ready():
            return self.binary
        log(
            f"Building llama-server from llama-cpp-python {self.version}'s llama.cpp, AMX disabled "
            f"(once, into {self.root}; several minutes)..."
        )
        t0 = time.monotonic()
        source = self._fetch_source()
        llama_cpp = source / "vendor" / "llama.cpp"
        cmake_dir = self.root / "cmake"
        jobs = str(os.cpu_count() or 2)
        subprocess.run(
            ["cmake", "-S", str(llama_cpp), "-B", str(cmake_dir), *CMAKE_OPTIONS], check=True, stdout=subprocess.DEVNULL
        )
        subprocess.run(
            ["cmake", "--build", str(cmake_dir), "--target", "llama-server", "-j", jobs],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cmake_dir / "bin" / "llama-server", self.binary)
        info = {
            "llama_cpp_python": self.version,
            "llama_cpp_commit": _vendored_commit(source),
            "cmake_options": CMAKE_OPTIONS,
            "build_seconds": round(time.monotonic() - t0),
        }
        (self.root / "build_info.json").write_text(json.dumps(info, indent=2))
        shutil.rmtree(cmake_dir, ignore_errors=True)
        log(f"Built {self.binary} in {info['build_seconds']} s")
        return self.binary

    def _fetch_source(self) -> Path:
        """llama-cpp-python's sdist, unpacked down to its changelog and vendored llama.cpp tree."""
        download = self.root / "sdist"
        pip_download(f"llama-cpp-python=={self.version}", download, "--no-binary", "llama-cpp-python")
        archive = next(download.glob("llama_cpp_python-*.tar.gz"))
        source = self.root / "src"
        shutil.rmtree(source, ignore_errors=True)
        with tarfile.open(archive) as tar:
            top = f"llama_cpp_python-{self.version}/"
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(top + "vendor/llama.cpp/") or m.name == top + "CHANGELOG.md"
            ]
            for m in members:
                m.name = m.name[len(top) :]
            tar.extractall(source, members=members, filter="data")
        return source


def _vendored_commit(source: Path) -> str:
    """llama-cpp-python names the llama.cpp commit it vendors in its changelog's latest entry."""
    match = re.search(r"llama\.cpp@([0-9a-f]{7,40})", (source / "CHANGELOG.md").read_text())
    return match.group(1) if match else "unknown"


@dataclass(frozen=True)
class ServerSettings:
    """One way to run llama-server: its defaults, or the flags that suit the model's cache best."""

    label: str
    flags: tuple[str, ...] = ()


def best_settings(kind: str) -> ServerSettings:
    """llama-server's best flags for an editing workload on this kind of model: dense caches reuse
    shifted chunks (`--cache-reuse`, as llama.vscode recommends); sliding-window caches keep the
    whole window (`--swa-full`) so they can be truncated anywhere; recurrent and hybrid state gets
    many checkpoints at a small spacing."""
    flags = {"dense": ("--cache-reuse", "256"), "swa": ("--swa-full",)}.get(
        kind, ("--ctx-checkpoints", "64", "--checkpoint-min-step", "256")
    )
    return ServerSettings("llama-server best", flags)


DEFAULT_SETTINGS = ServerSettings("llama-server default")

LLAMA_VSCODE_SETTINGS = ServerSettings(
    "llama-server as llama.vscode runs it", ("-b", "1024", "-ub", "1024", "--cache-reuse", "256")
)
"""The flags of llama-server's `--fim-qwen-*-default` presets, which llama.vscode tells its users to run:
1,024-token batches (so `/infill` keeps the last 768 tokens of the prefix and 256 of the suffix) and
shifted chunks of 256 tokens reused from the previous prompt."""


class LlamaServer:
    """A llama-server process with one slot on a free local port, and its HTTP API."""

    def __init__(
        self,
        binary: Path,
        model: Path,
        n_ctx: int,
        threads: int,
        settings: ServerSettings,
        log: Path,
        port: int | None = None,
        trace: bool = True,
    ) -> None:
        """`port`: a given one (a server started again where it was), else a free one. `trace` logs
        every checkpoint the server makes (`checkpoint_bytes` reads them), at a cost in log size."""
        self.port = port or _free_port()
        self.settings = settings
        self.log_path = log
        command = [
            str(binary),
            "-m",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-c",
            str(n_ctx),
            "-np",
            "1",
            "-t",
            str(threads),
            "-tb",
            str(threads),
            "--no-webui",
            *(("-lv", "4") if trace else ()),  # trace level: the log then names each checkpoint it creates
            *settings.flags,
        ]
        self._log = log.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}; see {self.log_path}")
            try:
                if self._get("/health").get("status") == "ok":
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"llama-server did not become ready; see {self.log_path}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.loads(r.read())

    def peak_rss(self) -> int:
        return peak_rss(self.process.pid)

    def checkpoint_bytes(self) -> int:
        """The most checkpoint memory the slot held, from the log: "created context checkpoint i of
        n (… size = S MiB)" means i checkpoints of about S MiB each are alive."""
        pattern = re.compile(r"created context checkpoint (\d+) of \d+ .*size = ([0-9.]+) MiB")
        sizes = [
            int(m.group(1)) * float(m.group(2)) for m in pattern.finditer(self.log_path.read_text(errors="replace"))
        ]
        return int(max(sizes, default=0.0) * 2**20)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
