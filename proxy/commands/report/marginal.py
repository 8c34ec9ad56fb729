"""The marginal tax in ``taxmeter report``: what removing one filter would save.

A filter's own latency is not what removing it saves when filters run in
parallel, share a model or contend for the event loop; the difference
between the baseline (every filter) and its ablation variant
``without_<filter>`` (see :mod:`proxy.config.ablation`) is. For each filter
with such a variant that has data: baseline minus it (positive: the filter
costs that much), for the latency tax, the TTFT tax and the CPU of all
filters, at each statistic, with a 95% interval.

The latency and TTFT figures are the comparisons' own (the same resamples,
the sign turned). The CPU is bootstrapped here the same way from /stats'
per-request totals; from Prometheus only its mean is known (see
:mod:`proxy.commands.report.prometheus_whole`), so it has no interval.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from proxy.commands.report.bootstrap import Resamples, bootstrap, difference_ci
from proxy.commands.report.sources import Snapshot
from proxy.commands.report.stats import STATISTICS, summarize

MARGINAL_METRICS = ("latency_tax_seconds", "ttft_tax_seconds", "filter_cpu_seconds")


def _entry(
    filter_name: str,
    variant: str,
    metric: str,
    statistic: str,
    difference: float,
    ci95: list[float | None],
) -> dict[str, Any]:
    return {
        "filter": filter_name,
        "variant": variant,
        "metric": metric,
        "statistic": statistic,
        "difference": difference,
        "ci95": ci95,
    }


def marginal_section(
    snapshot: Snapshot,
    baseline: str,
    comparisons: Iterable[dict[str, Any]],
    resamples: int,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """The report's ``marginal`` key: one entry per filter, metric and statistic."""
    by_key = {(c["variant"], c["metric"], c["statistic"]): c for c in comparisons}
    base_cpu = snapshot.variants[baseline].filter_cpu
    base_resampled: Resamples | None = None
    out: list[dict[str, Any]] = []
    for name, variant in snapshot.variants.items():
        filter_name = variant.ablates
        if filter_name is None or name == baseline or variant.requests == 0:
            continue
        for metric in MARGINAL_METRICS[:2]:
            for statistic in STATISTICS:
                c = by_key.get((name, metric, statistic))
                if c is not None:
                    lo, hi = c["ci95"]
                    out.append(
                        _entry(filter_name, name, metric, statistic, -c["difference"], [-hi, -lo])
                    )
        cpu = variant.filter_cpu
        if isinstance(base_cpu, list) and isinstance(cpu, list) and base_cpu and cpu:
            if base_resampled is None:
                base_resampled = bootstrap(base_cpu, resamples, rng)
            resampled = bootstrap(cpu, resamples, rng)
            base_summary, summary = summarize(base_cpu), summarize(cpu)
            for statistic in STATISTICS:
                lo, hi = difference_ci(base_resampled, resampled, statistic)
                difference = base_summary[statistic] - summary[statistic]
                out.append(
                    _entry(filter_name, name, MARGINAL_METRICS[2], statistic, difference, [lo, hi])
                )
        elif isinstance(base_cpu, float) and isinstance(cpu, float):
            out.append(
                _entry(filter_name, name, MARGINAL_METRICS[2], "mean", base_cpu - cpu, [None, None])
            )
    return out
