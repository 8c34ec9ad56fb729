"""``taxmeter report``: what each A/B variant costs, and what each filter caught.

    taxmeter report (--proxy URL | --prometheus URL) [--window 1h] [--baseline NAME]
                    [--json | --html FILE] [--route chat_completions,completions,responses,messages]
                    [--resamples 2000] [--seed N]

``--proxy`` reads a running proxy's metrics listener (``/stats``: one value
per recent request, so percentiles are exact and the 95% intervals a plain
bootstrap); ``--prometheus`` reads ``increase(...[window])`` of taxmeter's
histograms (percentiles interpolated inside buckets, intervals from
resampled bucket counts, so both only as fine as the buckets). The baseline
is ``--baseline``, else the variant of the highest weight (first of equals)
with ``--proxy``, the one with the most requests with ``--prometheus``; an
ablation variant (``without_<filter>``) only when no other has requests.
Besides the comparisons: the marginal tax of each ablated filter
(:mod:`~proxy.commands.report.marginal`) and each variant's capability tax
(:mod:`~proxy.commands.report.capability`).

Output: tables for people, or with ``--json`` one document (seconds; null
where there is no data; see docs/report.md), or with ``--html FILE`` one
self-contained page of charts and tables (:mod:`~proxy.commands.report.html`;
``-``: on standard output). Exit status: 0; 1 when the
source is unreachable, answers something unexpected or holds no variant with
requests; 2 on bad arguments, an unknown baseline or a page that cannot be written.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from proxy.commands.report.bootstrap import (
    Resamples,
    bootstrap,
    bootstrap_buckets,
    difference_ci,
)
from proxy.commands.report.capability import capability_section
from proxy.commands.report.html import render_html
from proxy.commands.report.marginal import marginal_section
from proxy.commands.report.sources import (
    METRICS,
    Figures,
    FilterFigures,
    Snapshot,
    SourceError,
    read_prometheus,
    read_proxy,
)
from proxy.commands.report.stats import STATISTICS, Summary, summarize, summarize_buckets
from proxy.commands.report.text import Asked, render
from proxy.config.routes import ROUTE_LABELS

# The routes that generate text (embeddings and unjudged routes are apart).
DEFAULT_ROUTES = ("chat_completions", "completions", "responses", "messages")
DEFAULT_WINDOW = "1h"
FLAGGED = ("block", "redact")  # the actions a canary counts as caught
_PROMQL_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")


class ReportError(Exception):
    """No report can be made; ``status`` is the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _http_url(text: str) -> str:
    if not re.match(r"https?://[^/]", text):
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def _window(text: str) -> str:
    if not _PROMQL_DURATION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a PromQL duration like 1h or 30m, got {text!r}")
    return text


def _routes(text: str) -> tuple[str, ...] | None:
    if text == "all":
        return None
    routes = tuple(r.strip() for r in text.split(",") if r.strip())
    unknown = [r for r in routes if r not in ROUTE_LABELS]
    if unknown or not routes:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or some of {', '.join(ROUTE_LABELS)}, got {text!r}"
        )
    return routes


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--proxy",
        metavar="URL",
        type=_http_url,
        help="a proxy's metrics listener, e.g. http://127.0.0.1:9464",
    )
    source.add_argument(
        "--prometheus",
        metavar="URL",
        type=_http_url,
        help="a Prometheus server that scrapes taxmeter",
    )
    parser.add_argument(
        "--window",
        metavar="DURATION",
        type=_window,
        help=f"with --prometheus: the range to look back ({DEFAULT_WINDOW})",
    )
    parser.add_argument("--baseline", metavar="NAME", help="the variant the others are compared to")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    output.add_argument(
        "--html",
        metavar="FILE",
        help="write one self-contained HTML page (charts and tables) to FILE (-: stdout)",
    )
    parser.add_argument(
        "--route",
        type=_routes,
        default=DEFAULT_ROUTES,
        metavar="ROUTES",
        help="comma-separated routes, or all (chat_completions,completions,responses,messages)",
    )
    parser.add_argument(
        "--resamples",
        metavar="N",
        type=_positive_int,
        default=2000,
        help="bootstrap resamples (2000)",
    )
    parser.add_argument(
        "--seed", metavar="N", type=int, help="seed the bootstrap, for repeatable intervals"
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """The command: fetch, compute, print. Returns the exit status."""
    try:
        if args.proxy is not None:
            if args.window is not None:
                raise ReportError("--window applies to --prometheus only", 2)
            snapshot = read_proxy(args.proxy, args.route)
        else:
            snapshot = read_prometheus(args.prometheus, args.window or DEFAULT_WINDOW, args.route)
        baseline = choose_baseline(snapshot, args.baseline)
    except SourceError as exc:
        print(f"taxmeter report: {exc}", file=err)
        return 1
    except ReportError as exc:
        print(f"taxmeter report: {exc}", file=err)
        return exc.status
    report = assemble(snapshot, baseline, args.resamples, random.Random(args.seed))
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
        return 0
    routes = "all" if args.route is None else ", ".join(args.route)
    asked = Asked(routes, args.window or DEFAULT_WINDOW, args.baseline is not None, args.resamples)
    if args.html is None:
        out.write(render(report, snapshot, asked))
        return 0
    page = render_html(report, snapshot, asked)
    if args.html == "-":
        out.write(page)
        return 0
    try:
        Path(args.html).write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"taxmeter report: cannot write {args.html}: {exc.strerror or exc}", file=err)
        return 2
    print(f"taxmeter report: wrote {args.html}", file=out)
    return 0


def choose_baseline(snapshot: Snapshot, wanted: str | None) -> str:
    with_data = [name for name, v in snapshot.variants.items() if v.requests > 0]
    if not with_data:
        raise ReportError(f"{snapshot.url}: no variant has requests on these routes", 1)
    if wanted is not None:
        if wanted not in snapshot.variants:
            known = ", ".join(snapshot.variants)
            raise ReportError(f"unknown baseline {wanted!r}; the variants are: {known}", 2)
        if wanted not in with_data:
            raise ReportError(f"the baseline {wanted!r} has no requests on these routes", 1)
        return wanted
    # An ablation variant lacks a filter on purpose: it is what the baseline is compared to.
    whole = [name for name in with_data if snapshot.variants[name].ablates is None] or with_data
    if snapshot.source == "proxy":
        return max(whole, key=lambda name: snapshot.variants[name].weight or 0.0)
    return max(whole, key=lambda name: snapshot.variants[name].requests)


def _summary(figures: Figures | None) -> Summary | None:
    if figures is None:
        return None
    return summarize(figures) if isinstance(figures, list) else summarize_buckets(figures)


def _bootstrap(figures: Figures, resamples: int, rng: random.Random) -> Resamples:
    if isinstance(figures, list):
        return bootstrap(figures, resamples, rng)
    return bootstrap_buckets(figures, resamples, rng)


def assemble(
    snapshot: Snapshot, baseline: str, resamples: int, rng: random.Random
) -> dict[str, Any]:
    """The report as the JSON document: summaries, comparisons with the baseline, filters."""
    variants: dict[str, dict[str, Any]] = {
        name: {"requests": v.requests, **{m: _summary(v.metrics.get(m)) for m in METRICS}}
        for name, v in snapshot.variants.items()
    }
    base = snapshot.variants[baseline]
    base_resampled: dict[str, Resamples] = {}  # drawn once, shared by every comparison
    comparisons = []
    for name, variant in snapshot.variants.items():
        for metric in METRICS:
            if name == baseline or metric not in variant.metrics or metric not in base.metrics:
                continue
            if metric not in base_resampled:
                base_resampled[metric] = _bootstrap(base.metrics[metric], resamples, rng)
            resampled = _bootstrap(variant.metrics[metric], resamples, rng)
            for statistic in STATISTICS:
                lo, hi = difference_ci(resampled, base_resampled[metric], statistic)
                difference = (
                    variants[name][metric][statistic] - variants[baseline][metric][statistic]
                )
                comparisons.append(
                    {
                        "variant": name,
                        "metric": metric,
                        "statistic": statistic,
                        "difference": difference,
                        "ci95": [lo, hi],
                    }
                )
    return {
        "source": snapshot.source,
        "ci_method": "bootstrap" if snapshot.source == "proxy" else "histogram-bootstrap",
        "baseline": baseline,
        "variants": variants,
        "comparisons": comparisons,
        "marginal": marginal_section(snapshot, baseline, comparisons, resamples, rng),
        "capability": capability_section(
            {name: v.capability for name, v in snapshot.variants.items()},
            baseline,
            resamples,
            rng,
        ),
        "filters": {name: _filter_row(f) for name, f in snapshot.filters.items()},
    }


def _filter_row(figures: FilterFigures) -> dict[str, Any]:
    calls = sum(figures.decisions.values())

    def rate(*actions: str) -> float | None:
        return sum(figures.decisions.get(a, 0.0) for a in actions) / calls if calls else None

    def per_1000_requests(total: float | None) -> float | None:
        if total is None or not figures.requests:
            return None
        return total / figures.requests * 1000

    return {
        "requests": figures.requests,
        "mean_cost_seconds": (
            figures.duration_seconds_sum / figures.requests if figures.requests else None
        ),
        "block_rate": rate("block"),
        "redact_rate": rate("redact"),
        "error_rate": rate("error", "timeout"),
        "observed_block": round(figures.observed.get("block", 0.0)),
        "observed_redact": round(figures.observed.get("redact", 0.0)),
        "cpu_seconds_per_1000_requests": per_1000_requests(figures.cpu_seconds_sum),
        "cost_usd_per_1000_requests": per_1000_requests(figures.cost_usd_sum),
        "latency_per_call": _summary(figures.durations),
        **_canary_rates(figures.canary),
    }


def _canary_rates(checks: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Catch and false-positive rates as the shipped recording rules define them: the
    share of non-benign (catch) and of benign (false positive) canaries flagged."""

    def share(benign: bool) -> float | None:
        rows = [actions for label, actions in checks.items() if (label == "benign") == benign]
        total = sum(sum(actions.values()) for actions in rows)
        flagged = sum(actions.get(a, 0.0) for actions in rows for a in FLAGGED)
        return flagged / total if total else None

    total = sum(sum(actions.values()) for actions in checks.values())
    return {
        "canary_checks": round(total),
        "catch_rate": share(benign=False),
        "false_positive_rate": share(benign=True),
    }
