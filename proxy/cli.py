"""The ``taxmeter`` command.

    taxmeter serve [--config FILE] [--upstream URL] [--listen HOST:PORT]
                   [--metrics-listen HOST:PORT] [--workers N]
    taxmeter mock-upstream [--listen HOST:PORT] [--ttft-ms MS] [--tokens-per-s N]
                           [--max-tokens N] [--model NAME]
    taxmeter check-config [--config] FILE
    taxmeter --version
    taxmeter report (--proxy URL | --prometheus URL) [--window 1h] [--baseline NAME]
                    [--json] [--route ROUTES] [--resamples N] [--seed N]
    taxmeter evaluate [--config FILE] [--dataset FILE.jsonl] [--json]
                      [--target FILTER=LABEL[,LABEL]]... [--stage input]
    taxmeter calibrate [--requests N] [--concurrency N] [--config FILE] [--json]

Exit status: 0 on success, 2 on a bad config, bad arguments or an address that
cannot be listened on (one line on stderr, never a traceback); ``report`` exits 1
when its source is unreachable or has no data (see proxy.commands.report.command).

Import paths in a config (a custom filter's ``type: acme_guard:AcmeGuard``)
resolve from the current directory too, as uvicorn's and gunicorn's do, and
only they (see filters.registry).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from proxy.config.schema import Config, ConfigError, load_config, parse_host_port
from proxy.server.listen_error import ListenError

# Each command's code is imported only when that command runs: `report` need
# not pay for the server, the simulated model server and the metrics
# (seconds of imports on a small host), and `--help` for none of them.
OFFLINE_COMMANDS = ("report", "evaluate", "calibrate")
COMMANDS: dict[str, dict[str, Any]] = {
    "serve": {"help": "run the proxy"},
    "mock-upstream": {
        "help": "run the simulated model server alone",
        "description": "A simulated OpenAI- and Anthropic-compatible model server, for trying "
        "taxmeter with no GPU and no model. Point upstream.url at the URL it prints "
        "(no /v1: requests keep their own path).",
        "formatter_class": argparse.ArgumentDefaultsHelpFormatter,
    },
    "check-config": {"help": "validate a config file, filters built, then exit"},
    "report": {"help": "compare the variants' latency tax, with 95%% confidence intervals"},
    "evaluate": {"help": "what each filter catches and costs, on a labelled dataset"},
    "calibrate": {"help": "self-reported overhead against what a client measures, on this host"},
}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _version() -> str:
    try:
        return version("taxmeter")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"unknown level {text!r} (expected one of: {', '.join(LOG_LEVELS)})"
        )
    return text.lower()


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--config", metavar="FILE", help="YAML config (default: built-in)")
    serve.add_argument("--upstream", metavar="URL", help="model server base URL")
    serve.add_argument("--listen", metavar="HOST:PORT", help="proxy address (127.0.0.1:8080)")
    serve.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="metrics address (127.0.0.1:9464)"
    )
    serve.add_argument(
        "--log-level", type=_log_level, default="warning", metavar="LEVEL",
        help=f"logging level: {', '.join(LOG_LEVELS)} (warning)",
    )  # fmt: skip
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="proxy processes sharing the port (SO_REUSEPORT), one metrics listener (1)",
    )  # fmt: skip
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def _mock_arguments(mock: argparse.ArgumentParser) -> None:
    from proxy.sim.settings import MockSettings

    defaults = MockSettings()
    mock.add_argument(
        "--listen", metavar="HOST:PORT", default="127.0.0.1:8000", help="address to listen on"
    )
    mock.add_argument(
        "--ttft-ms", type=float, default=defaults.ttft_ms, metavar="MS",
        help="time to first token, in milliseconds",
    )  # fmt: skip
    mock.add_argument(
        "--tokens-per-s", type=float, default=defaults.tokens_per_s, metavar="N",
        help="tokens per second after the first",
    )  # fmt: skip
    mock.add_argument(
        "--max-tokens", type=int, default=defaults.max_tokens, metavar="N",
        help="tokens in an answer when the request sets no max_tokens",
    )  # fmt: skip
    mock.add_argument(
        "--model", default=defaults.model, metavar="NAME", help="the model name it answers as"
    )
    mock.add_argument("--with-parent", action="store_true", help=argparse.SUPPRESS)


def _check_arguments(check: argparse.ArgumentParser) -> None:
    where = check.add_mutually_exclusive_group(required=True)
    where.add_argument("file", nargs="?", metavar="FILE", help="the YAML config")
    where.add_argument(
        "--config", dest="config_file", metavar="FILE", help="the same, as serve takes it"
    )


def _offline_command(name: str) -> Any:
    return importlib.import_module(f"proxy.commands.{name}.command")


def _arguments_of(name: str) -> Callable[[argparse.ArgumentParser], None]:
    local = {"serve": _serve_arguments, "mock-upstream": _mock_arguments,
             "check-config": _check_arguments}  # fmt: skip
    if name in local:
        return local[name]
    add: Callable[[argparse.ArgumentParser], None] = _offline_command(name).add_arguments
    return add


def _parser(chosen: str | None) -> argparse.ArgumentParser:
    """The command line; only the chosen command's options are built (they import its code)."""
    parser = argparse.ArgumentParser(
        prog="taxmeter",
        description="An inference proxy that measures the latency tax of AI safety filters.",
    )
    parser.add_argument("--version", action="version", version=f"taxmeter {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, options in COMMANDS.items():
        sub = commands.add_parser(name, **options)
        if name == chosen:
            _arguments_of(name)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # The top level has options only, so its first other word is the command.
    chosen = next((w for w in words if not w.startswith("-")), None)
    args = _parser(chosen if chosen in COMMANDS else None).parse_args(words)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "mock-upstream":
            return _mock_upstream(args)
        if args.command in OFFLINE_COMMANDS:
            code: int = _offline_command(args.command).run(args, sys.stdout, sys.stderr)
            return code
        return _check_config(args.file or args.config_file)
    except ConfigError as exc:
        print(f"taxmeter: config error: {exc}", file=sys.stderr)
        return 2
    except ListenError as exc:
        print(f"taxmeter: {exc}", file=sys.stderr)
        return 2


def _notice(line: str) -> None:
    """A progress line (a filter loading its model): on stderr, beside the errors."""
    print(f"taxmeter: {line}", file=sys.stderr, flush=True)


def _validated(config: Config) -> Config:
    from proxy.judge.build import build_chains, build_filters

    # Constructing the filters is part of validation: their params are checked there.
    build_chains(config, build_filters(config, _notice))
    return config


def _check_config(path: str) -> int:
    config = _validated(load_config(path))
    names = ", ".join(f.name for f in config.filters) or "no filters"
    print(f"{path}: ok ({names}; variants: {', '.join(v.name for v in config.variants)})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvloop

    from proxy.server.serve import run_proxy
    from proxy.server.workers import run_worker

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config).with_overrides(
        upstream=args.upstream, listen=args.listen, metrics_listen=args.metrics_listen
    )
    # A process that serves builds its filters once, which validates them (a
    # ConfigError before anything but the simulated model server listens); the
    # supervisor of several workers builds none to serve, so it validates first.
    if args.worker:
        uvloop.run(run_worker(config, args.config, _notice))
        return 0
    if args.workers < 1:
        raise ConfigError("--workers", f"expected a whole number >= 1, got {args.workers}")
    if args.workers > 1:
        if config.admin is not None:
            raise ConfigError("admin", "the admin API needs --workers 1 (with several, use SIGHUP)")
        _validated(config)
    announce = lambda line: print(line, flush=True)  # noqa: E731
    uvloop.run(run_proxy(config, announce, args.config, args.workers, args.log_level, _notice))
    return 0


def _mock_upstream(args: argparse.Namespace) -> int:
    from proxy.sim.model_server import main_mock
    from proxy.sim.settings import MockSettings

    where = parse_host_port("--listen", args.listen)
    try:
        settings = MockSettings(
            ttft_ms=args.ttft_ms,
            tokens_per_s=args.tokens_per_s,
            max_tokens=args.max_tokens,
            model=args.model,
        )
    except ValueError as exc:
        print(f"taxmeter mock-upstream: {exc}", file=sys.stderr)
        return 2

    # Its one line ends with the URL; `serve` reads it from this child process.
    main_mock(where.host, where.port, settings, args.with_parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
