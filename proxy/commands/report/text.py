"""The tables of ``taxmeter report`` for people, from the report's JSON document."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from proxy.commands.report.sources import Snapshot
from proxy.commands.report.stats import STATISTICS

TITLES = {
    "request_duration_seconds": "total latency",
    "latency_tax_seconds": "latency tax",
    "ttft_seconds": "time to first token",
    "ttft_tax_seconds": "TTFT tax",
}
MARGINAL_TITLES = {
    "latency_tax_seconds": "latency tax",
    "ttft_tax_seconds": "TTFT tax",
    "filter_cpu_seconds": "filter CPU",
}
CAPABILITY_TITLES = {
    "blocked_share": "blocked",
    "redacted_share": "redacted",
    "content_filter_share": "content_filter",
    "completion_tokens_per_request": "tokens/request",
}
NO_DATA_WHY = {
    "ttft_seconds": ": no streamed responses",
    "ttft_tax_seconds": ": no streamed responses",
}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Two-space indented columns: the first ``left`` aligned left (names), the
    others right (numbers)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  "
        + "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]


def ms(seconds: float | None, sign: str = "") -> str:
    return "-" if seconds is None else f"{seconds * 1e3:{sign}.3f}"


def usd(amount: float | None) -> str:
    return "-" if amount is None else f"{amount:.6f}"


def percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


class Asked(NamedTuple):
    """What the command line asked for, as the report's heading says it."""

    routes: str
    window: str
    baseline_given: bool
    resamples: int


def heading(report: dict[str, Any], snapshot: Snapshot, asked: Asked) -> list[str]:
    lines = [f"taxmeter report: {snapshot.url}", f"  routes: {asked.routes}"]
    if snapshot.source == "proxy":
        lines.append("  figures: the most recent requests of each variant (the proxy's reservoir)")
        why = "the highest weight"
        method = "bootstrap of each variant's per-request figures"
    else:
        end = "now (no recent scrape)"
        if snapshot.evaluated_at is not None:
            when = datetime.fromtimestamp(snapshot.evaluated_at, UTC)
            end = when.strftime("%Y-%m-%d %H:%M:%S UTC, the newest scrape")
        lines.append(f"  figures: Prometheus histograms over {asked.window} ending {end}")
        why = "the most requests; Prometheus does not know the weights"
        method = (
            "histogram-bootstrap (resampled bucket counts).\n"
            "    APPROXIMATE: computed from histogram buckets, so percentiles and intervals\n"
            "    are no finer than the bucket around them (e.g. 10 ms to 25 ms)"
        )
    chosen = "chosen with --baseline" if asked.baseline_given else why
    lines.append(f"  baseline: {report['baseline']} ({chosen})")
    lines.append(f"  95% confidence intervals, {asked.resamples} resamples: {method}")
    return lines


def interval_text(ci95: Sequence[float | None], show: Any) -> tuple[str, str]:
    """The interval as text, and the mark of one that excludes 0."""
    lo, hi = ci95
    if lo is None or hi is None:
        return "-", ""
    return f"[{show(lo)}, {show(hi)}]", "*" if lo > 0 or hi < 0 else ""


def _marginal(report: dict[str, Any], source: str) -> list[str]:
    lines = [
        "",
        f"marginal tax: baseline ({report['baseline']}) - without_<filter>, what each filter"
        " adds, ms; * the 95% CI excludes 0",
    ]
    if source == "prometheus" and report["marginal"]:
        lines.append("  (filter CPU: its mean only, all routes; Prometheus has no per-request sum)")
    rows = []
    for m in report["marginal"]:
        interval, mark = interval_text(m["ci95"], lambda v: ms(v, "+"))
        rows.append(
            [
                m["filter"],
                m["variant"],
                MARGINAL_TITLES[m["metric"]],
                m["statistic"],
                ms(m["difference"], "+"),
                interval,
                mark,
            ]
        )
    header = ["filter", "variant", "metric", "stat", "difference", "95% CI", ""]
    if rows:
        return lines + _table(header, rows, left=4)
    return [*lines, "  (no ablation variant has data: see ablation in docs/report.md)"]


def _capability(report: dict[str, Any]) -> list[str]:
    section = report["capability"]
    lines = [
        "",
        "capability (shares of requests; tokens/request: completion tokens, of the requests"
        " whose tokens are known)",
    ]
    rows = [
        [
            name,
            str(row["requests"]),
            *(percent(row[key]) for key in list(CAPABILITY_TITLES)[:3]),
            "-" if row["completion_tokens_per_request"] is None
            else f"{row['completion_tokens_per_request']:.2f}",
            str(row["requests_with_tokens"]),
        ]
        for name, row in section["variants"].items()
    ]  # fmt: skip
    header = ["variant", "requests", *list(CAPABILITY_TITLES.values()), "with tokens"]
    lines += _table(header, rows) if rows else ["  (no variant has data)"]
    lines += [
        "",
        f"capability: variant - baseline ({report['baseline']}); shares in percentage points;"
        " * the 95% CI excludes 0",
    ]
    rows = []
    for d in section["differences"]:
        tokens = d["metric"] == "completion_tokens_per_request"

        def show(value: float, tokens: bool = tokens) -> str:
            return f"{value:+.2f}" if tokens else f"{value * 100:+.1f}"

        interval, mark = interval_text(d["ci95"], show)
        rows.append(
            [d["variant"], CAPABILITY_TITLES[d["metric"]], show(d["difference"]), interval, mark]
        )
    header = ["variant", "metric", "difference", "95% CI", ""]
    if rows:
        return lines + _table(header, rows, left=2)
    return [*lines, "  (no other variant has data to compare)"]


def render(report: dict[str, Any], snapshot: Snapshot, asked: Asked) -> str:
    """The report as tables for people (times in milliseconds)."""
    lines = heading(report, snapshot, asked)
    variants = report["variants"]
    weights = {name: v.weight for name, v in snapshot.variants.items()}
    lines += ["", "requests"]
    lines += _table(
        ["variant", "weight", "requests"],
        [
            [name, "-" if weights[name] is None else f"{weights[name]:g}", str(v["requests"])]
            for name, v in variants.items()
        ],
    )
    for metric in TITLES:
        lines += ["", f"{TITLES[metric]} (ms)"]
        if all(v[metric] is None for v in variants.values()):
            lines.append(f"  no data{NO_DATA_WHY.get(metric, '')}")
            continue
        rows = [
            [name, *(ms((v[metric] or {}).get(s)) for s in STATISTICS)]
            for name, v in variants.items()
        ]
        lines += _table(["variant", *STATISTICS], rows)
    lines += ["", f"variant - baseline ({report['baseline']}), ms; * the 95% CI excludes 0"]
    rows = []
    for c in report["comparisons"]:
        lo, hi = c["ci95"]
        mark = "*" if lo > 0 or hi < 0 else ""
        rows.append(
            [
                c["variant"],
                TITLES[c["metric"]],
                c["statistic"],
                ms(c["difference"], "+"),
                f"[{ms(lo, '+')}, {ms(hi, '+')}]",
                mark,
            ]
        )
    if rows:
        lines += _table(["variant", "metric", "stat", "difference", "95% CI", ""], rows, left=3)
    else:
        lines.append("  (no other variant has data to compare)")
    lines += _marginal(report, snapshot.source)
    lines += _capability(report)
    lines += ["", "filters (all routes and variants; rates are shares of enforcing calls)"]
    lines.append("  (CPU and USD: every call that ran, per 1,000 requests the filter judged)")
    if snapshot.source == "prometheus":
        lines.append("  (requests: the filter's calls at its busiest stage, in the window)")
    rows = [
        [
            name,
            str(f["requests"]),
            ms(f["mean_cost_seconds"]),
            percent(f["block_rate"]),
            percent(f["redact_rate"]),
            percent(f["error_rate"]),
            str(f["observed_block"]),
            str(f["observed_redact"]),
            ms(f["cpu_seconds_per_1000_requests"]),
            usd(f["cost_usd_per_1000_requests"]),
        ]
        for name, f in report["filters"].items()
    ]
    header = [
        "filter",
        "requests",
        "mean cost (ms)",
        "block",
        "redact",
        "error+timeout",
        "observed block",
        "observed redact",
        "CPU ms /1k req",
        "USD /1k req",
    ]
    lines += _table(header, rows) if rows else ["  (no filter ran)"]
    lines += _filter_calls(report)
    return "\n".join(lines) + "\n"


def _filter_calls(report: dict[str, Any]) -> list[str]:
    rows = [
        [
            name,
            *(ms((f["latency_per_call"] or {}).get(s)) for s in ("p50", "p99")),
            str(f["canary_checks"]),
            percent(f["catch_rate"]),
            percent(f["false_positive_rate"]),
        ]
        for name, f in report["filters"].items()
    ]
    if not rows:
        return []
    header = ["filter", "call p50 (ms)", "call p99 (ms)", "canaries", "catch", "false positives"]
    return [
        "",
        "filter calls and canaries (a call: one stage; catch: share of non-benign canaries",
        "  blocked or redacted; false positives: share of benign ones; - where none ran)",
        *_table(header, rows),
    ]
