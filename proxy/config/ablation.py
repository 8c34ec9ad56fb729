"""``ablation: {weight: W}``: one variant per enforcing filter, with that filter disabled.

What removing one filter would save is not its own latency when filters run
in parallel, share a model or contend for the loop: it is the difference
between the traffic that runs every filter and the traffic that runs every
filter but that one. Ablation adds that traffic: for each filter whose
configured ``mode`` is ``enforce``, a variant ``without_<filter>`` at weight
``W`` that disables it, after the configured variants. ``taxmeter report``
compares each with the baseline (its *marginal* table).

The variants are the filters as configured: no configured variant's
``disable`` or ``modes`` applies to them. A configured variant of the same
name is an error rather than silently replaced.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.config.checks import ConfigError, check_known, check_mapping, check_number
from proxy.config.filter_specs import FilterSpec

PREFIX = "without_"
KEYS = ("weight",)


@dataclass(frozen=True, slots=True)
class Ablation:
    """One added variant: its name, the one filter it disables, its weight."""

    variant: str
    filter: str
    weight: float


def parse_ablation(
    raw: Any, filters: Sequence[FilterSpec], configured: Collection[str]
) -> tuple[Ablation, ...]:
    """The variants ``ablation:`` adds (none when it is absent or null).

    ``configured``: the names of the configured variants, which the added
    ones must not take.
    """
    if raw is None:
        return ()
    section = check_mapping("ablation", raw)
    check_known("ablation", section, KEYS)
    if "weight" not in section:
        raise ConfigError("ablation.weight", "required: the weight of each without_ variant")
    weight = check_number("ablation.weight", section["weight"])
    if weight < 0:
        raise ConfigError("ablation.weight", f"expected a number >= 0, got {section['weight']!r}")
    added = []
    for spec in filters:
        if spec.mode != "enforce":
            continue  # an observing filter changes nothing a request gets: nothing to remove
        name = PREFIX + spec.name
        if name in configured:
            raise ConfigError(
                f"variants.{name}",
                f"ablation adds a variant of this name (filter {spec.name!r} disabled); "
                "rename this variant or remove ablation",
            )
        added.append(Ablation(name, spec.name, weight))
    return tuple(added)
