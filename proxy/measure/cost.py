"""What a request's filters cost in money, priced once from its timeline.

A filter's cost for one request is its calls at the filter's
``cost_per_call_usd`` (a paid moderation API) plus the CPU its own code used
(:attr:`Breakdown.filter_cpu <proxy.measure.timeline.Breakdown.filter_cpu>`,
summed over stages) at ``cpu_usd_per_core_hour``. Every call that ran is
priced, whatever it decided and in whatever mode: an observing filter, or one
deferred until after the answer, still calls its API and still uses the CPU;
a call that timed out was made (and a paid API usually bills it). The prices
are the operator's, read from the config; they change on reload, from the
next request recorded on.
"""

from __future__ import annotations

from proxy.config.schema import Config
from proxy.measure.marks import FilterCall
from proxy.measure.timeline import Breakdown

SECONDS_PER_HOUR = 3600.0


class Prices:
    """The config's prices, swapped whole when the config changes (shared by the
    metrics and /stats, so both price a request the same)."""

    __slots__ = ("_table", "priced")

    def __init__(self, config: Config | None = None) -> None:
        self.update(config or Config())

    def update(self, config: Config) -> None:
        per_call = {f.name: f.cost_per_call_usd for f in config.filters if f.cost_per_call_usd}
        # One assignment: a request priced meanwhile sees the old table or the new.
        self._table = (per_call, config.cpu_usd_per_core_hour / SECONDS_PER_HOUR)
        self.priced = bool(per_call or config.cpu_usd_per_core_hour)  # else all costs are 0

    def costs(self, figures: Breakdown, calls: list[FilterCall]) -> dict[str, float]:
        """Dollars per filter that ran in this request (0.0 for a filter without prices)."""
        per_call, per_cpu_second = self._table
        usd: dict[str, float] = {}
        for (name, _stage), cpu_seconds in figures.filter_cpu.items():
            usd[name] = usd.get(name, 0.0) + cpu_seconds * per_cpu_second
        if per_call:
            for call in calls:
                price = per_call.get(call.filter)
                if price is not None:
                    usd[call.filter] = usd.get(call.filter, 0.0) + price
        return usd
