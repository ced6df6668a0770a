"""Workspace index benchmark: build time and peak memory on a tree of about 5,000 source files, a
restart on the unchanged tree, re-indexing one saved file, a file rewritten a thousand times a second,
retrieval time per question, and how often the file that answers a hand-made question ranks in the
top 5.

The tree is a copy (the benchmark writes to it) of source files from the interpreter's library
folders, or from ``--source``. Build, update and retrieval run in a fresh interpreter, so that its
peak RSS over the figure after imports is the index's own. Questions: ``fixtures/jinja2_questions.json``
(about the installed jinja2 package) and ``fixtures/sample_project/QUESTIONS.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ..index import WorkspaceIndex, retrieve
from ..workspace.admission import SKIPPED_DIR_NAMES, AdmissionOptions, AdmissionPolicy
from . import quiet

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SAMPLE = FIXTURES / "sample_project"
SOURCE_SUFFIXES = {".py", ".pyi", ".c", ".h", ".cpp", ".hpp", ".js", ".ts", ".rs", ".go", ".java", ".md", ".rst"}
MAX_FILE_BYTES = AdmissionOptions().max_file_bytes
HOT_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        action="append",
        default=None,
        metavar="DIR",
        help="copy source files from DIR (repeatable; default: the interpreter's library folders)",
    )
    parser.add_argument("--files", type=int, default=5000, help="source files to copy at most (default: %(default)s)")
    parser.add_argument("--updates", type=int, default=20, help="single-file updates to time (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    quiet.report()
    work = Path(tempfile.mkdtemp(prefix="coderag-index-bench-"))
    try:
        sources = [Path(s) for s in args.source] if args.source else _library_folders()
        tree = work / "tree"
        copied = _copy_sources(sources, tree, args.files)
        print(f"copied {copied} source files from {', '.join(map(str, sources))}", flush=True)
        child = subprocess.run(
            [sys.executable, "-m", __name__, str(tree), str(work / "cache"), str(args.updates)],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            return 1
        figures = json.loads(child.stdout.splitlines()[-1])
        sample = work / "sample"
        shutil.copytree(SAMPLE, sample, ignore=shutil.ignore_patterns("QUESTIONS.json", "__pycache__"))
        sample_q = [(q["question"], q["file"]) for q in _questions(SAMPLE / "QUESTIONS.json")]
        sets = [("sample project (fixtures/sample_project)", sample, sample_q)]
        jinja = json.loads((FIXTURES / "jinja2_questions.json").read_text(encoding="utf-8"))
        spec = find_spec(jinja["package"])
        if spec is not None and spec.origin is not None:
            sets.append(
                (
                    f"{jinja['package']} (installed package)",
                    Path(spec.origin).parent,
                    [(q["question"], q["file"]) for q in jinja["questions"]],
                )
            )
        _print_figures(figures, [(name, _accuracy(root, questions)) for name, root, questions in sets])
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _library_folders() -> list[Path]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys(Path(paths[k]).resolve() for k in ("purelib", "platlib", "stdlib")))


def _copy_sources(sources: list[Path], tree: Path, limit: int) -> int:
    """Copy up to ``limit`` source files (by suffix, within the size limit) under ``tree/<n>-<name>/``,
    skipping the directories the index skips anyway."""
    copied = 0
    seen: set[Path] = set()
    for n, source in enumerate(sources):
        for directory, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIR_NAMES and not d.endswith(".egg-info"))
            for name in sorted(files):
                path = Path(directory, name)
                if copied == limit:
                    return copied
                if path.suffix not in SOURCE_SUFFIXES or path.is_symlink() or path.resolve() in seen:
                    continue
                if path.stat().st_size > MAX_FILE_BYTES:
                    continue
                seen.add(path.resolve())
                target = tree / f"{n}-{source.name}" / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                copied += 1
    return copied


def _questions(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["questions"]


def _accuracy(root: Path, questions: list[tuple[str, str]]) -> tuple[int, int, int]:
    """(questions whose file ranks first, in the top 5, all questions), files ranked by their best chunk."""
    with WorkspaceIndex(AdmissionPolicy([root])) as index:
        index.build().result()
        first = top5 = 0
        for question, expected in questions:
            files = list(dict.fromkeys(hit.display for hit in index.search(question, 50)))
            first += files[:1] == [expected]
            top5 += expected in files[:5]
    return first, top5, len(questions)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _print_figures(f: dict[str, Any], accuracy: list[tuple[str, tuple[int, int, int]]]) -> None:
    print()
    print("| figure | value |")
    print("|---|---|")
    print(
        f"| tree | {f['files']} files indexed, {f['mib']:.1f} MiB of text, "
        f"{f['chunks']} chunks, {f['terms']} distinct terms |"
    )
    print(f"| build from scratch | {f['build_s']:.1f} s |")
    print(f"| peak extra memory during the build (RSS over the interpreter after imports) | {f['peak_mib']:.0f} MiB |")
    print(
        f"| restart on the unchanged tree (saved index; {f['restart_chunked']} files re-read and chunked) | "
        f"{f['restart_s']:.2f} s |"
    )
    print(
        f"| single-file update, write to searchable (p50 / p95 of {f['updates']}) | "
        f"{f['update_p50_ms']:.1f} / {f['update_p95_ms']:.1f} ms |"
    )
    print(
        f"| file written {f['hot_writes']} times in {HOT_SECONDS:.0f} s, each reported | "
        f"{f['hot_indexed']} re-indexes |"
    )
    print(
        f"| retrieval per question over the whole tree (p50 / p95 of {f['questions']}) | "
        f"{f['retrieve_p50_ms']:.1f} / {f['retrieve_p95_ms']:.1f} ms |"
    )
    for name, (first, top5, total) in accuracy:
        print(
            f"| {name}: right file first / in the top 5 | "
            f"{first}/{total} / {top5}/{total} ({100 * top5 / total:.0f}%) |"
        )


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _measure(tree: Path, cache: Path, updates: int) -> dict[str, Any]:
    """Runs in a fresh interpreter; returns the figures."""
    base = _rss_mib()
    f: dict[str, Any] = {}
    started = time.perf_counter()
    index = WorkspaceIndex(AdmissionPolicy([tree]), cache)
    report = index.build().result()
    f["build_s"] = time.perf_counter() - started
    f["peak_mib"] = _rss_mib() - base
    stats = index.stats()
    f.update(files=stats["files"], chunks=stats["chunks"], terms=stats["terms"], mib=stats["bytes"] / 2**20)

    questions = [q["question"] for q in _questions(SAMPLE / "QUESTIONS.json")]
    questions += [
        q["question"] for q in json.loads((FIXTURES / "jinja2_questions.json").read_text(encoding="utf-8"))["questions"]
    ]
    timings = []
    for _ in range(3):
        for question in questions:
            t0 = time.perf_counter()
            retrieve(index, question, lambda text: len(text) // 4)
            timings.append((time.perf_counter() - t0) * 1000)
    f.update(questions=len(timings), retrieve_p50_ms=_pct(timings, 0.5), retrieve_p95_ms=_pct(timings, 0.95))

    python_files = sorted(p for p in tree.rglob("*.py") if p in index)
    picked = python_files[:: max(1, len(python_files) // updates)][:updates]
    timings = []
    for i, path in enumerate(picked):
        marker = f"coderag_bench_marker_{i}"
        with path.open("a", encoding="utf-8") as out:
            out.write(f"\n\ndef {marker}():\n    return {i}\n")
        t0 = time.perf_counter()
        index.update_path(path)
        index.wait_idle()
        hits = index.search(marker, 1)
        timings.append((time.perf_counter() - t0) * 1000)
        if not hits or hits[0].path != path:
            raise RuntimeError(f"update of {path} not found by a search")
    f.update(updates=len(timings), update_p50_ms=_pct(timings, 0.5), update_p95_ms=_pct(timings, 0.95))

    hot = picked[0]
    before = index.stats()["chunked"]
    writes = 0
    end = time.monotonic() + HOT_SECONDS
    while time.monotonic() < end:
        with hot.open("a", encoding="utf-8") as out:
            out.write(f"# write {writes}\n")
        index.update_path(hot)
        writes += 1
        time.sleep(0.001)
    index.wait_idle()
    f.update(hot_writes=writes, hot_indexed=index.stats()["chunked"] - before)
    index.close()

    started = time.perf_counter()
    with WorkspaceIndex(AdmissionPolicy([tree]), cache) as again:
        again.build().result()
        f["restart_s"] = time.perf_counter() - started
        f["restart_chunked"] = again.stats()["chunked"]
    f["first_build_indexed"] = report.indexed
    return f


if __name__ == "__main__":
    print(json.dumps(_measure(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))))
