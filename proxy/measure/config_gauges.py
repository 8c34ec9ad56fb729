"""Gauges that say what is running: each filter's budget, the config's hash, the release.

    taxmeter_filter_budget_seconds{filter}   budget_ms / 1000, filters with a budget only
    taxmeter_config_info{config_sha256}      1: the sha256 of the config's bytes as loaded
    taxmeter_build_info{version}             1: the package's version

They follow the live config (:meth:`ConfigGauges.update` on every change),
so a dashboard can mark when the tax changed because the configuration or
the release did. A series that no longer applies (a filter gone or without
a budget, the previous config's hash) is removed: one config_info series at
a time.

With ``--workers N`` each worker writes its gauges to the shared
multiprocess files, where a series cannot be removed. There a worker sets
it to 0 instead, and the supervisor's collector (:class:`WithoutRetired`)
leaves out those 0s; ``livemax`` keeps a series while any live worker holds
it at 1 (or at its budget), so N workers read 1, not N, and a worker that
has not reloaded yet shows its config beside the new one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from proxy.config.schema import Config

# Their value 0 means "removed" (a budget is > 0; info gauges read 1).
RETIRED_AT_ZERO = (
    "taxmeter_filter_budget_seconds",
    "taxmeter_config_info",
    "taxmeter_build_info",
)
_MULTIPROCESS = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


def build_version() -> str:
    try:
        return metadata.version("taxmeter")
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


class ConfigGauges:
    """The three gauges on ``registry``, set from ``config`` now and on every update."""

    def __init__(self, registry: CollectorRegistry, config: Config) -> None:
        self.budget = Gauge(
            "taxmeter_filter_budget_seconds",
            "Each filter's p99 target per request (budget_ms), for alerts and dashboards.",
            ("filter",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.config_info = Gauge(
            "taxmeter_config_info",
            "1, labelled with the sha256 of the config as loaded (the file's bytes).",
            ("config_sha256",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.build_info = Gauge(
            "taxmeter_build_info",
            "1, labelled with taxmeter's version.",
            ("version",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.build_info.labels(build_version()).set(1)
        self._budgets: dict[str, float] = {}
        self._sha256: str | None = None
        self.update(config)

    def update(self, config: Config) -> None:
        budgets = {f.name: f.budget_ms / 1000 for f in config.filters if f.budget_ms is not None}
        for name in self._budgets.keys() - budgets.keys():
            self._retire(self.budget, name)
        for name, seconds in budgets.items():
            self.budget.labels(name).set(seconds)
        self._budgets = budgets
        if config.sha256 != self._sha256:
            if self._sha256 is not None:
                self._retire(self.config_info, self._sha256)
            self.config_info.labels(config.sha256).set(1)
            self._sha256 = config.sha256

    @staticmethod
    def _retire(gauge: Gauge, label: str) -> None:
        if any(name in os.environ for name in _MULTIPROCESS):
            gauge.labels(label).set(0)  # the files keep every series: see the module docstring
        else:
            gauge.remove(label)


class WithoutRetired(Collector):
    """The supervisor's view of the workers' files, without the series they retired."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Metric]:
        for metric in self._collector.collect():
            if metric.name in RETIRED_AT_ZERO:
                metric.samples = [s for s in metric.samples if s.value != 0]
            yield metric
