"""The ``taxmeter`` command.

    taxmeter serve [--config FILE] [--upstream URL] [--listen HOST:PORT]
                   [--metrics-listen HOST:PORT] [--workers N]
    taxmeter mock-upstream [--listen HOST:PORT] [--ttft-ms MS] [--tokens-per-s N]
                           [--max-tokens N] [--model NAME]
    taxmeter check-config FILE
    taxmeter report (--proxy URL | --prometheus URL) [--window 1h] [--baseline NAME]
                    [--json] [--route ROUTES] [--resamples N] [--seed N]
    taxmeter evaluate [--config FILE] [--dataset FILE.jsonl] [--json]
                      [--target FILTER=LABEL[,LABEL]]... [--stage input]
    taxmeter calibrate [--requests N] [--concurrency N] [--config FILE] [--json]

Exit status: 0 on success, 2 on a bad config or bad arguments; ``report``
exits 1 when its source is unreachable or has no data (see proxy.commands.report.command).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvloop

from proxy.commands.calibrate.command import add_arguments as add_calibrate_arguments
from proxy.commands.calibrate.command import run as run_calibrate
from proxy.commands.evaluate.command import add_arguments as add_evaluate_arguments
from proxy.commands.evaluate.command import run as run_evaluate
from proxy.commands.report.command import add_arguments as add_report_arguments
from proxy.commands.report.command import run as run_report
from proxy.config.schema import Config, ConfigError, load_config, parse_host_port
from proxy.judge.build import build_chains, build_filters
from proxy.server.serve import run_proxy
from proxy.server.workers import run_worker
from proxy.sim.model_server import MockSettings, main_mock


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taxmeter",
        description="An inference proxy that measures the latency tax of AI safety filters.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", metavar="FILE", help="YAML config (default: built-in)")
    serve.add_argument("--upstream", metavar="URL", help="model server base URL")
    serve.add_argument("--listen", metavar="HOST:PORT", help="proxy address (127.0.0.1:8080)")
    serve.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="metrics address (127.0.0.1:9464)"
    )
    serve.add_argument("--log-level", default="warning", help="logging level (warning)")
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="proxy processes sharing the port (SO_REUSEPORT), one metrics listener (1)",
    )  # fmt: skip
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    mock = commands.add_parser("mock-upstream", help="run the simulated model server alone")
    defaults = MockSettings()
    mock.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:8000")
    mock.add_argument("--ttft-ms", type=float, default=defaults.ttft_ms)
    mock.add_argument("--tokens-per-s", type=float, default=defaults.tokens_per_s)
    mock.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    mock.add_argument("--model", default=defaults.model)
    mock.add_argument("--with-parent", action="store_true", help=argparse.SUPPRESS)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("file")

    report = commands.add_parser(
        "report", help="compare the variants' latency tax, with 95%% confidence intervals"
    )
    add_report_arguments(report)

    evaluate = commands.add_parser(
        "evaluate", help="what each filter catches and costs, on a labelled dataset"
    )
    add_evaluate_arguments(evaluate)

    calibrate = commands.add_parser(
        "calibrate", help="self-reported overhead against what a client measures, on this host"
    )
    add_calibrate_arguments(calibrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "mock-upstream":
            return _mock_upstream(args)
        if args.command == "report":
            return run_report(args, sys.stdout, sys.stderr)
        if args.command == "evaluate":
            return run_evaluate(args, sys.stdout, sys.stderr)
        if args.command == "calibrate":
            return run_calibrate(args, sys.stdout, sys.stderr)
        return _check_config(args.file)
    except ConfigError as exc:
        print(f"taxmeter: config error: {exc}", file=sys.stderr)
        return 2


def _notice(line: str) -> None:
    """A progress line (a filter loading its model): on stderr, beside the errors."""
    print(f"taxmeter: {line}", file=sys.stderr, flush=True)


def _validated(config: Config) -> Config:
    # Constructing the filters is part of validation: their params are checked there.
    build_chains(config, build_filters(config, _notice))
    return config


def _check_config(path: str) -> int:
    config = _validated(load_config(path))
    names = ", ".join(f.name for f in config.filters) or "no filters"
    print(f"{path}: ok ({names}; variants: {', '.join(v.name for v in config.variants)})")
    return 0


def _serve(args: argparse.Namespace) -> int:
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
