"""The charts of ``taxmeter report --html``, as inline SVG: no script, no font, no link.

Each function takes figures already computed for the report and returns one
``<svg>`` element as text; every string that came from the data is escaped
here. Times come in seconds and are drawn in milliseconds.

- :func:`percentile_chart`: latency at each percentile, one line per variant,
  on the HdrHistogram axis (``-log10(1 - q)``), so 50 %, 90 %, 99 % and 99.9 %
  are evenly spaced and the tail is as wide as the body;
- :func:`bar_chart`: horizontal bars, grouped per row (a filter);
- :func:`interval_mark`: one 95 % interval and its estimate against 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

# Distinguishable in colour and in grey (Okabe-Ito, the first eight).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000")
AXIS = "#555"
GRID = "#ddd"
TAIL_QUANTILE = 0.999  # the right end of a percentile chart
# The marked percentiles: position on the axis and label.
PERCENTILE_TICKS = ((0.0, "0"), (0.5, "50"), (0.9, "90"), (0.99, "99"), (0.999, "99.9"))
# Per mille, so 0.5, 0.95 and 0.99 are the very floats of the summaries' percentiles.
CHART_QUANTILES = tuple(
    k / 1000
    for k in [
        *range(0, 900, 50),  # 0 to 85 % in steps of 5
        *range(900, 990, 10),  # 90 to 98 % in steps of 1
        *range(990, 1000),  # 99 to 99.9 % in steps of 0.1
    ]
)

Point = tuple[float, float]


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def tail_position(q: float) -> float:
    """Where quantile ``q`` sits on the percentile axis (0 at q = 0, 3 at 99.9 %)."""
    return -math.log10(1 - min(q, TAIL_QUANTILE))


def nice_ticks(top: float, wanted: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2 or 5 x 10^k)."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / wanted
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, content: str, anchor: str = "middle", extra: str = "") -> str:
    return (
        f'<text x="{_number(x)}" y="{_number(y)}" text-anchor="{anchor}"{extra}>'
        f"{escape(content)}</text>"
    )


def _open(width: int, height: int, label: str) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" '
        'font-family="sans-serif" font-size="11">'
        f"<title>{escape(label)}</title>"
    )


def _tick_label(value: float) -> str:
    return f"{value:g}"


def percentile_chart(
    series: Sequence[tuple[str, Sequence[Point]]], label: str, width: int = 540, height: int = 210
) -> str:
    """One line per ``(name, [(quantile, seconds), ...])``, coloured by its place."""
    left, right, top, bottom = 56, 12, 10, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((ms * 1e3 for _, points in series for _, ms in points), default=0.0)
    y_ticks = nice_ticks(highest)
    y_top = y_ticks[-1]
    x_end = tail_position(TAIL_QUANTILE)

    def x(q: float) -> float:
        return left + plot_w * tail_position(q) / x_end

    def y(ms: float) -> float:
        return top + plot_h * (1 - ms / y_top)

    parts = [_open(width, height, label)]
    for tick in y_ticks:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{_number(y(tick))}" '
            f'y2="{_number(y(tick))}" stroke="{GRID}"/>'
        )
        parts.append(_text(left - 6, y(tick) + 4, _tick_label(tick), "end"))
    for q, name in PERCENTILE_TICKS:
        parts.append(
            f'<line x1="{_number(x(q))}" x2="{_number(x(q))}" y1="{top}" '
            f'y2="{top + plot_h}" stroke="{GRID}"/>'
        )
        parts.append(_text(x(q), top + plot_h + 14, name))
    parts.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
        f'fill="none" stroke="{AXIS}"/>'
    )
    parts.append(_text(left + plot_w / 2, height - 4, "percentile"))
    parts.append(
        _text(14, top + plot_h / 2, "ms", extra=f' transform="rotate(-90 14 {top + plot_h / 2})"')
    )
    for index, (name, points) in enumerate(series):
        path = " ".join(f"{_number(x(q))},{_number(y(s * 1e3))}" for q, s in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{colour(index)}" '
            f'stroke-width="2"><title>{escape(name)}</title></polyline>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    rows: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float | None]]],
    label: str,
    show: Callable[[float], str],
    width: int = 540,
) -> str:
    """For each row, one bar per ``(series name, values by row)``; None draws no bar.

    The series are coloured by their place (a legend above); ``show`` writes a
    value beside its bar."""
    bar, gap, legend = 12, 10, 22
    left = min(200, 14 + 7 * max((len(r) for r in rows), default=4))
    right = 70
    row_h = bar * len(groups) + gap
    height = legend + row_h * len(rows) + 20
    plot_w = width - left - right
    highest = max((v for _, values in groups for v in values if v is not None), default=0.0)
    ticks = nice_ticks(highest, 4)
    scale = plot_w / ticks[-1]
    parts = [_open(width, height, label)]
    at = left
    for index, (name, _) in enumerate(groups):
        parts.append(f'<rect x="{at}" y="4" width="10" height="10" fill="{colour(index)}"/>')
        parts.append(_text(at + 14, 13, name, "start"))
        at += 24 + 7 * len(name)
    bottom = legend + row_h * len(rows)
    for tick in ticks:
        tx = left + tick * scale
        parts.append(
            f'<line x1="{_number(tx)}" x2="{_number(tx)}" y1="{legend}" y2="{bottom}" '
            f'stroke="{GRID}"/>'
        )
        parts.append(_text(tx, bottom + 14, _tick_label(tick)))
    for r, row in enumerate(rows):
        y0 = legend + r * row_h + gap / 2
        parts.append(_text(left - 6, y0 + bar * len(groups) / 2 + 4, row, "end"))
        for index, (_, values) in enumerate(groups):
            value = values[r]
            if value is None:
                continue
            y = y0 + index * bar
            w = max(value * scale, 0.5)
            parts.append(
                f'<rect x="{left}" y="{_number(y)}" width="{_number(w)}" height="{bar - 2}" '
                f'fill="{colour(index)}"/>'
            )
            parts.append(_text(left + w + 4, y + bar - 3, show(value), "start"))
    parts.append(
        f'<line x1="{left}" x2="{left}" y1="{legend}" y2="{bottom}" stroke="{AXIS}"/></svg>'
    )
    return "".join(parts)


def interval_mark(
    difference: float, lo: float | None, hi: float | None, bound: float, width: int = 160
) -> str:
    """The estimate (a dot) and its 95 % interval (a line) on a scale of ``-bound..+bound``,
    with 0 in the middle; red when the interval excludes 0."""
    height, pad = 16, 4
    bound = bound if bound > 0 else 1.0

    def x(value: float) -> float:
        clipped = max(-bound, min(bound, value))
        return pad + (width - 2 * pad) * (clipped + bound) / (2 * bound)

    excludes = lo is not None and hi is not None and (lo > 0 or hi < 0)
    ink = "#c0392b" if excludes else AXIS
    parts = [
        _open(width, height, "95% interval"),
        f'<line x1="{_number(x(0))}" x2="{_number(x(0))}" y1="1" y2="{height - 1}" '
        f'stroke="{GRID}" stroke-width="2"/>',
    ]
    if lo is not None and hi is not None:
        parts.append(
            f'<line x1="{_number(x(lo))}" x2="{_number(x(hi))}" y1="8" y2="8" '
            f'stroke="{ink}" stroke-width="2"/>'
        )
    parts.append(f'<circle cx="{_number(x(difference))}" cy="8" r="3" fill="{ink}"/></svg>')
    return "".join(parts)
