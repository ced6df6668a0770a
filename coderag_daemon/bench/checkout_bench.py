"""A branch switch and back, on a real project's history: the files of one release of a package
(PyPI wheel) are opened and closed again, so that they stay in the context as files on disk; then
the files of another release replace them in place (`git checkout other`), then the first ones come
back (`git checkout -`). Measured side by side in one run: a daemon that saves its cache
(`persistCache`, the default), which loads the first release's saved state on the way back, and one
that does not, which decodes it again."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types

from . import quiet
from .editor_session import Session
from .replay import ReplaySource, wheel_sources
from .restart_bench import SETTLED_S, settled


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = ReplaySource()
    parser.add_argument("--model", default=None, help="GGUF model (default: the embedded default model)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads, 0 = the free cores")
    parser.add_argument("--package", default=source.package, help="pure-Python package on PyPI (default: %(default)s)")
    parser.add_argument("--old", default="4.0.0", help="the release checked out first (default: %(default)s)")
    parser.add_argument("--new", default=source.new, help="the release switched to and back (default: %(default)s)")


@dataclass
class Step:
    seconds: float
    decoded: int


def _write(root: Path, files: dict[str, str]) -> None:
    """Make `root` hold exactly `files`, each changed file replaced at once (as a checkout writes it)."""
    for path in root.rglob("*.py"):
        if str(path.relative_to(root)) not in files:
            path.unlink()
    for rel, text in files.items():
        path = root / rel
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        new = path.with_name(path.name + ".new")
        new.write_text(text)
        new.replace(path)


def _decoded_since(s: Session, seq: int) -> int:
    updates = {st["last"]["seq"]: st["last"] for st in s.status if st.get("last")}
    return sum(u["tokensReprocessed"] for n, u in updates.items() if n > seq)


def _last_seq(s: Session) -> int:
    return max((st["last"]["seq"] for st in s.status if st.get("last")), default=0)


async def _round_trip(
    args: argparse.Namespace, work: Path, old: dict[str, str], new: dict[str, str], persist: bool
) -> list[Step]:
    root = work / ("saving" if persist else "not-saving") / args.package
    root.mkdir(parents=True)
    _write(root, old)
    env = {**os.environ, "CODERAG_STATE_DIR": str(work / "states"), "CODERAG_INDEX_DIR": str(work / "index")}
    command = [sys.executable, "-m", "coderag_daemon", "--log-level", "WARNING", "--threads", str(args.threads)]
    command += ["--model", args.model] if args.model else []
    command += [] if persist else ["--no-persist-cache"]
    s = Session()
    await s.client.start_io(*command, env=env)
    steps: list[Step] = []
    try:
        await s.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            )
        )
        s.client.initialized(types.InitializedParams())
        if (await s.wait_state("ready", "error"))["state"] == "error":
            raise RuntimeError("the daemon could not load a model")
        t0 = time.perf_counter()
        for rel in sorted(old):
            uri = s.open(root, rel)
            s.client.text_document_did_close(
                types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
            )
        steps.append(Step(await settled(s, t0), _decoded_since(s, 0)))
        for files in (new, old):
            seq, t0 = _last_seq(s), time.perf_counter()
            _write(root, files)
            steps.append(Step(await settled(s, t0), _decoded_since(s, seq)))
    finally:
        await s.close()
    return steps


async def _run(args: argparse.Namespace) -> int:
    quiet.report()
    work = Path(tempfile.mkdtemp(prefix="coderag-checkout-"))
    try:
        cache = Path(tempfile.gettempdir()) / "coderag-wheels"
        old = wheel_sources(args.package, args.old, cache)
        new = wheel_sources(args.package, args.new, cache)
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        versions = f"{args.package} {args.old} and {args.new}"
        print(f"{versions}: {len(old)} files, {len(changed)} differ: {', '.join(changed)}")
        saving = await _round_trip(args, work, old, new, persist=True)
        not_saving = await _round_trip(args, work, old, new, persist=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| step | saving its cache | not saving it |")
    print("|---|---|---|")
    labels = [f"files of {args.old} opened (cold)", f"checkout {args.new}", f"checkout {args.old} again"]
    for label, a, b in zip(labels, saving, not_saving, strict=True):
        print(f"| {label} | {a.seconds:.1f} s, {a.decoded} tokens decoded | {b.seconds:.1f} s, {b.decoded} tokens |")
    print(f"(each time: until the daemon's cache held the files, then stayed idle for {SETTLED_S:.0f} s)")
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))
