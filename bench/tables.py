"""Markdown tables of a run: one per scenario, the sweep, and the targets.

Every figure is the median over the repeats, followed by the spread
[min, max] when there was more than one repeat.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from rig import FOREIGN_LIMIT
from scenarios import Run, Scenario
from sweep import LIMIT_MS, Sweep
from targets import LABELS

SATURATED = 0.9


def num(value: float | None) -> str:
    if value is None or value != value:
        return "—"
    size = abs(value)
    if size < 10:
        return f"{value:.3f}"
    if size < 100:
        return f"{value:.2f}"
    if size < 1000:
        return f"{value:.1f}"
    return f"{value:.0f}"


def spread(
    values: Sequence[float | None], scale: float = 1.0, fmt: Callable[[float], str] = num
) -> str:
    """Median [min, max] of the values that exist."""
    present = [v * scale for v in values if v is not None and v == v]
    if not present:
        return "—"
    median = fmt(statistics.median(present))
    if len(present) == 1:
        return median
    return f"{median} [{fmt(min(present))}, {fmt(max(present))}]"


def whole(value: float) -> str:
    return f"{value:.0f}"


def pct(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None and v == v]
    return f"{statistics.median(present) * 100:.0f}" if present else "—"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def added(scenario: Scenario, key: str, pick: Callable[[Run], float]) -> list[float]:
    """Per repeat: the target's figure minus direct's in the same repeat."""
    direct = scenario.runs.get("direct", [])
    return [pick(r) - pick(d) for r, d in zip(scenario.runs.get(key, []), direct, strict=False)]


def _flags(runs: list[Run], per: str) -> str:
    n = len(runs)
    flags = []
    load = sum(r.usage.load_core_busy >= SATURATED for r in runs)
    if load:
        flags.append(f"load core ≥90% busy ({load}/{n})")
    gen = sum(r.gen_util >= SATURATED for r in runs)
    if gen:
        flags.append(f"generator ≥90% CPU ({gen}/{n})")
    disturbed = sum(r.usage.foreign >= FOREIGN_LIMIT for r in runs)
    if disturbed:
        flags.append(f"foreign CPU load ≥{FOREIGN_LIMIT:.0%} of a core ({disturbed}/{n})")
    errors = sum(r.errors for r in runs)
    if errors:
        flags.append(f"{errors} failed {per}s")
    return "; ".join(flags)


def scenario_table(scenario: Scenario) -> list[str]:
    per, gen = scenario.per, scenario.generator
    ttft = "TTFT " if per == "stream" else ""
    header = ["target", f"{ttft}p50 ms", f"{ttft}p99 ms", f"added {ttft}p50 ms",
              f"added {ttft}p99 ms", "req/s" if per == "request" else "streams",
              f"proxy CPU ms/{per}", "proxy core %", "peak RSS MiB", f"{gen} CPU %",
              "load core %", "notes"]  # fmt: skip
    rows = []
    for key, runs in scenario.runs.items():
        direct = key == "direct"
        rss = scenario.peak_rss_kib.get(key)
        rows.append([
            LABELS[key],
            spread([r.p50_ms for r in runs]),
            spread([r.p99_ms for r in runs]),
            "—" if direct else spread(added(scenario, key, lambda r: r.p50_ms)),
            "—" if direct else spread(added(scenario, key, lambda r: r.p99_ms)),
            spread([r.throughput for r in runs], fmt=whole if per == "stream" else num),
            spread([r.proxy_cpu_ms for r in runs]),
            pct([r.proxy_util for r in runs]),
            "—" if rss is None else num(rss / 1024),
            pct([r.gen_util for r in runs]),
            pct([r.usage.load_core_busy for r in runs]),
            _flags(runs, per),
        ])  # fmt: skip
    return table(header, rows)


def truth_table(scenario: Scenario) -> list[str]:
    """taxmeter's self-reported overhead beside what the load generator saw it add."""
    rows = []
    for key, runs in scenario.runs.items():
        reported = [r.reported_overhead_ms for r in runs]
        if not any(v is not None for v in reported):
            continue
        p50 = added(scenario, key, lambda r: r.p50_ms)
        mean = added(scenario, key, lambda r: float("nan") if r.mean_ms is None else r.mean_ms)
        residuals = [spread(_residual(p50, reported)), spread(_residual(mean, reported))]
        rows.append([LABELS[key], spread(p50), spread(mean), spread(reported), *residuals])
    if not rows:
        return []
    header = ["target", "added p50 ms (black box)", "added mean ms (black box)",
              "self-reported overhead ms (mean)", "residual vs p50 ms",
              "residual vs mean ms"]  # fmt: skip
    return table(header, rows)


def _residual(black_box: list[float], reported: list[float | None]) -> list[float]:
    return [b - s for b, s in zip(black_box, reported, strict=False) if s is not None]


def sweep_tables(result: Sweep) -> list[str]:
    rows = []
    for key, rate in result.passed.items():
        if rate is None:
            rows.append([LABELS[key], f"< {result.rates[0]:g}", "—", "—", "—", "—",
                         result.stopped.get(key, "")])  # fmt: skip
            continue
        steps = result.steps[(key, rate)]
        # Not stopped by its own figures: the rate is a lower bound.
        bound = "" if result.stopped.get(key, "").startswith("at ") else "≥ "
        rows.append([
            LABELS[key],
            f"{bound}{rate:g}",
            spread(result.added(key, rate, "p50_ms")),
            spread(result.added(key, rate, "p99_ms")),
            spread([s.proxy_cpu_ms for s in steps]),
            pct([s.usage.proxy_core_busy for s in steps]),
            result.stopped.get(key, ""),
        ])  # fmt: skip
    header = ["target", f"highest rate/s with added p99 < {LIMIT_MS:g} ms",
              "added p50 ms there", "added p99 ms there", "proxy CPU ms/req there",
              "proxy core % there", "left the sweep"]  # fmt: skip
    lines = table(header, rows)
    lines += ["", "Added p99 (ms, median of the repeats) at each rate; direct's own p99 in "
              "its column. `lag`: the generator sent under 95% of the rate; `fail`: "
              "requests failed or were dropped; `busy`: other work on the host used over "
              f"{FOREIGN_LIMIT:.0%} of a core during a repeat (after retries).", ""]  # fmt: skip
    keys = ["direct", *result.passed]
    matrix = []
    for rate in result.rates:
        if not any((k, rate) in result.steps for k in keys):
            break
        row = [f"{rate:g}"]
        for key in keys:
            found = result.steps.get((key, rate))
            if not found:
                row.append("")
                continue
            steps = found
            if key == "direct":
                cell = num(statistics.median(s.p99_ms for s in steps))
            else:
                cell = num(statistics.median(result.added(key, rate, "p99_ms") or [float("nan")]))
            if any(s.lagged for s in steps):
                cell += " lag"
            if any(s.result.errors or s.result.dropped for s in steps):
                cell += " fail"
            if any(s.usage.foreign >= FOREIGN_LIMIT for s in steps):
                cell += " busy"
            row.append(cell)
        load = [s.usage.load_core_busy for s in result.steps.get(("direct", rate), [])]
        gen = [s.result.cpu_s / s.result.wall_s for s in result.steps.get(("direct", rate), [])]
        row += [pct(gen), pct(load)]
        matrix.append(row)
    header = ["rate/s", "direct p99", *(LABELS[k] for k in keys[1:]),
              "generator CPU % (direct)", "load core % (direct)"]  # fmt: skip
    return lines + table(header, matrix)
