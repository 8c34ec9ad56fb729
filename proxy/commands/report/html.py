"""``taxmeter report --html``: the report as one self-contained page.

The page holds everything it shows: the charts are inline SVG
(:mod:`~proxy.commands.report.svg`), the style one ``<style>`` element, and
there is no script, font, image or link to fetch (its Content-Security-Policy
forbids them, so a page saved from a hostile source cannot run anything
either). Every string from the data (variant, filter and route names, the
source's URL) is escaped.

It draws the report's own figures: the summaries, comparisons, marginal
table, capability and filter rows of the JSON document, and the percentile
curves from the same samples or histograms with the same definition of a
percentile (:func:`~proxy.commands.report.stats.quantiles`), so the p50, p95
and p99 on a curve are those of the tables. Beside each picture, a table of
the numbers it is drawn from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from proxy.commands.report import svg
from proxy.commands.report.sources import Snapshot
from proxy.commands.report.stats import STATISTICS, quantiles
from proxy.commands.report.text import (
    CAPABILITY_TITLES,
    MARGINAL_TITLES,
    NO_DATA_WHY,
    TITLES,
    Asked,
    heading,
    ms,
    percent,
    usd,
)

POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
STYLE = """
body { font-family: sans-serif; font-size: 13px; color: #222; margin: 16px 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 22px 0 6px; border-bottom: 1px solid #ccc; }
h3 { font-size: 14px; margin: 12px 0 4px; }
p.note, ul.heading { color: #555; margin: 2px 0; }
ul.heading { padding-left: 18px; }
.pair { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: flex-start; }
table { border-collapse: collapse; margin: 4px 0; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f4f4f4; }
td.name, th.name { text-align: left; }
td.excludes { color: #c0392b; font-weight: bold; }
span.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
details { margin: 4px 0 8px; }
summary { color: #555; }
"""
# Statistics of the filter bars: per call, at the median and the tail.
FILTER_STATISTICS = ("p50", "p99")


def _table(
    header: Sequence[str], rows: Iterable[Sequence[str]], names: int = 1, marks: bool = False
) -> str:
    """A table of already escaped cells: the first ``names`` columns text, the rest numbers.

    ``marks``: the last cell of a row is a class for its row's interval cell."""
    head = "".join(
        f'<th class="name">{escape(h)}</th>' if i < names else f"<th>{escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = list(row)
        mark = cells.pop() if marks else ""
        tds = []
        for i, cell in enumerate(cells):
            css = "name" if i < names else ("excludes" if mark and i == len(cells) - 2 else "")
            tds.append(f'<td class="{css}">{cell}</td>' if css else f"<td>{cell}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _swatch(index: int, name: str) -> str:
    return f'<span class="swatch" style="background:{svg.colour(index)}"></span>{escape(name)}'


def _heading(report: dict[str, Any], snapshot: Snapshot, asked: Asked) -> str:
    # The text report's heading, line for line: the same words in both.
    lines = heading(report, snapshot, asked)
    items = "".join(f"<li>{escape(' '.join(line.split()))}</li>" for line in lines[1:])
    return f"<h1>{escape(lines[0])}</h1><ul class='heading'>{items}</ul>"


def _requests(report: dict[str, Any], snapshot: Snapshot) -> str:
    rows = []
    for index, (name, v) in enumerate(report["variants"].items()):
        weight = snapshot.variants[name].weight
        rows.append(
            [_swatch(index, name), "-" if weight is None else f"{weight:g}", str(v["requests"])]
        )
    return "<h2>Requests</h2>" + _table(["variant", "weight", "requests"], rows)


def _distribution(report: dict[str, Any], snapshot: Snapshot, metric: str) -> str:
    title = TITLES[metric]
    out = [f"<h3>{escape(title)} (ms)</h3>"]
    variants = report["variants"]
    if all(v[metric] is None for v in variants.values()):
        return out[0] + f"<p class='note'>no data{escape(NO_DATA_WHY.get(metric, ''))}</p>"
    series: list[tuple[str, list[tuple[float, float]]]] = []
    summary_rows = []
    for index, (name, v) in enumerate(variants.items()):
        figures = snapshot.variants[name].metrics.get(metric)
        values = quantiles(figures, svg.CHART_QUANTILES) if figures is not None else []
        # A variant without data keeps its place (its colour) and draws no line.
        series.append((name, list(zip(svg.CHART_QUANTILES, values, strict=False))))
        summary = v[metric] or {}
        summary_rows.append([_swatch(index, name), *(ms(summary.get(s)) for s in STATISTICS)])
    chart = svg.percentile_chart(series, f"{title} by percentile, ms")
    numbers = _table(["variant", *STATISTICS], summary_rows)
    points = [
        [f"{q * 100:g}", *(ms(dict(points).get(q)) for _, points in series)]
        for q in svg.CHART_QUANTILES
    ]
    behind = _table(["percentile", *(name for name, _ in series)], points, names=1)
    out.append(f"<div class='pair'><div>{chart}</div><div>{numbers}</div></div>")
    out.append(f"<details><summary>the curve's points (ms)</summary>{behind}</details>")
    return "".join(out)


def _distributions(report: dict[str, Any], snapshot: Snapshot) -> str:
    return (
        "<h2>Distributions</h2><p class='note'>each variant's figure at each percentile "
        "(the axis spreads the tail: 90, 99 and 99.9 are evenly spaced)</p>"
        + "".join(_distribution(report, snapshot, metric) for metric in TITLES)
    )


def _interval_rows(
    entries: Sequence[dict[str, Any]],
    names: Callable[[dict[str, Any]], list[str]],
    show: Callable[[dict[str, Any], float], str],
    scale_key: Callable[[dict[str, Any]], str],
) -> list[list[str]]:
    """Rows of a table of differences: names, the difference, its interval and its mark
    (on one scale per ``scale_key``: a metric's rows compare with each other)."""
    bounds: dict[str, float] = {}
    for e in entries:
        lo, hi = e["ci95"]
        widest = max(abs(x) for x in (e["difference"], lo or 0.0, hi or 0.0))
        bounds[scale_key(e)] = max(bounds.get(scale_key(e), 0.0), widest)
    rows = []
    for e in entries:
        lo, hi = e["ci95"]
        interval = "-" if lo is None or hi is None else f"[{show(e, lo)}, {show(e, hi)}]"
        excludes = lo is not None and hi is not None and (lo > 0 or hi < 0)
        mark = svg.interval_mark(e["difference"], lo, hi, bounds[scale_key(e)] * 1.05)
        rows.append(
            [*names(e), show(e, e["difference"]), interval, mark, "excludes" if excludes else ""]
        )
    return rows


def _signed_ms(_: dict[str, Any], value: float) -> str:
    return ms(value, "+")


def _comparisons(report: dict[str, Any]) -> str:
    out = [
        f"<h2>Variant - baseline ({escape(report['baseline'])})</h2>",
        "<p class='note'>ms; the dot is the difference, the line its 95% interval, "
        "0 in the middle; red: the interval excludes 0</p>",
    ]
    if not report["comparisons"]:
        return "".join(out) + "<p class='note'>(no other variant has data to compare)</p>"
    rows = _interval_rows(
        report["comparisons"],
        lambda c: [escape(c["variant"]), escape(TITLES[c["metric"]]), escape(c["statistic"])],
        _signed_ms,
        lambda c: str(c["metric"]),
    )
    header = ["variant", "metric", "stat", "difference", "95% CI", "interval"]
    out.append(_table(header, rows, names=3, marks=True))
    return "".join(out)


def _marginal(report: dict[str, Any], source: str) -> str:
    out = [
        "<h2>Marginal tax: what each filter adds</h2>",
        f"<p class='note'>baseline ({escape(report['baseline'])}) - without_&lt;filter&gt;, ms;"
        " red: the 95% interval excludes 0</p>",
    ]
    if source == "prometheus" and report["marginal"]:
        out.append(
            "<p class='note'>filter CPU: its mean only, all routes; Prometheus has no "
            "per-request sum</p>"
        )
    if not report["marginal"]:
        return "".join(out) + (
            "<p class='note'>(no ablation variant has data: see ablation in docs/report.md)</p>"
        )
    rows = _interval_rows(
        report["marginal"],
        lambda m: [
            escape(m["filter"]),
            escape(m["variant"]),
            escape(MARGINAL_TITLES[m["metric"]]),
            escape(m["statistic"]),
        ],
        _signed_ms,
        lambda m: str(m["metric"]),
    )
    header = ["filter", "variant", "metric", "stat", "difference", "95% CI", "interval"]
    out.append(_table(header, rows, names=4, marks=True))
    return "".join(out)


def _capability(report: dict[str, Any]) -> str:
    section = report["capability"]
    out = ["<h2>Capability</h2>"]
    out.append(
        "<p class='note'>shares of requests; tokens/request: completion tokens, of the "
        "requests whose tokens are known</p>"
    )
    keys = list(CAPABILITY_TITLES)
    rows = [
        [
            escape(name),
            str(row["requests"]),
            *(percent(row[key]) for key in keys[:3]),
            "-" if row[keys[3]] is None else f"{row[keys[3]]:.2f}",
            str(row["requests_with_tokens"]),
        ]
        for name, row in section["variants"].items()
    ]
    header = ["variant", "requests", *CAPABILITY_TITLES.values(), "with tokens"]
    out.append(_table(header, rows) if rows else "<p class='note'>(no variant has data)</p>")
    if not section["differences"]:
        return "".join(out)

    def show(d: dict[str, Any], value: float) -> str:
        tokens = d["metric"] == "completion_tokens_per_request"
        return f"{value:+.2f}" if tokens else f"{value * 100:+.1f}"

    rows = _interval_rows(
        section["differences"],
        lambda d: [escape(d["variant"]), escape(CAPABILITY_TITLES[d["metric"]])],
        show,
        lambda d: str(d["metric"]),
    )
    out.append(
        f"<h3>variant - baseline ({escape(report['baseline'])})</h3>"
        "<p class='note'>shares in percentage points</p>"
    )
    out.append(
        _table(["variant", "metric", "difference", "95% CI", "interval"], rows, 2, marks=True)
    )
    return "".join(out)


def _filters(report: dict[str, Any], source: str) -> str:
    filters = report["filters"]
    out = [
        "<h2>Filters</h2>",
        "<p class='note'>all routes and variants. A call: one filter at one stage. CPU and USD:"
        " every call that ran, per 1,000 requests the filter judged. Catch: the share of "
        "non-benign canaries blocked or redacted; false positives: of benign ones "
        "(where canaries ran).</p>",
    ]
    if source == "prometheus":
        out.append(
            "<p class='note'>requests: the filter's calls at its busiest stage, in the "
            "window; call percentiles from histogram buckets</p>"
        )
    if not filters:
        return "".join(out) + "<p class='note'>(no filter ran)</p>"
    names = list(filters)

    def column(key: str, statistic: str | None = None, factor: float = 1e3) -> list[float | None]:
        values = []
        for f in filters.values():
            value = f[key] if statistic is None else (f[key] or {}).get(statistic)
            values.append(None if value is None else value * factor)
        return values

    charts = [
        svg.bar_chart(
            names,
            [(f"call {s}", column("latency_per_call", s)) for s in FILTER_STATISTICS],
            "filter latency per call, ms",
            lambda v: f"{v:.3f} ms",
        ),
        svg.bar_chart(
            names,
            [("CPU ms per 1,000 requests", column("cpu_seconds_per_1000_requests"))],
            "filter CPU per 1,000 requests, ms",
            lambda v: f"{v:.1f} ms",
        ),
    ]
    if any(f["canary_checks"] for f in filters.values()):
        charts.append(
            svg.bar_chart(
                names,
                [
                    ("catch", column("catch_rate", factor=100)),
                    ("false positives", column("false_positive_rate", factor=100)),
                ],
                "canary catch and false-positive rates, %",
                lambda v: f"{v:.1f}%",
            )
        )
    out.append("<div class='pair'>" + "".join(f"<div>{c}</div>" for c in charts) + "</div>")
    rows = [
        [
            escape(name),
            str(f["requests"]),
            *(ms((f["latency_per_call"] or {}).get(s)) for s in FILTER_STATISTICS),
            ms(f["mean_cost_seconds"]),
            ms(f["cpu_seconds_per_1000_requests"]),
            usd(f["cost_usd_per_1000_requests"]),
            percent(f["block_rate"]),
            percent(f["redact_rate"]),
            percent(f["error_rate"]),
            str(f["observed_block"]),
            str(f["observed_redact"]),
            str(f["canary_checks"]),
            percent(f["catch_rate"]),
            percent(f["false_positive_rate"]),
        ]
        for name, f in filters.items()
    ]
    header = [
        "filter", "requests", "call p50 (ms)", "call p99 (ms)", "mean cost (ms)",
        "CPU ms /1k req", "USD /1k req", "block", "redact", "error+timeout",
        "observed block", "observed redact", "canaries", "catch", "false positives",
    ]  # fmt: skip
    out.append(_table(header, rows))
    return "".join(out)


def render_html(report: dict[str, Any], snapshot: Snapshot, asked: Asked) -> str:
    """The report as one HTML page (times in milliseconds)."""
    title = escape(f"taxmeter report: {snapshot.url}")
    body = "".join(
        [
            _heading(report, snapshot, asked),
            _requests(report, snapshot),
            _distributions(report, snapshot),
            _filters(report, snapshot.source),
            _marginal(report, snapshot.source),
            _comparisons(report),
            _capability(report),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )
