"""Assigning each request to exactly one variant (A/B arm), by weight."""

from __future__ import annotations

import bisect
import itertools
import random

from proxy.config import VariantSpec


class VariantPicker:
    """Random assignment by weight; a single variant costs nothing to pick."""

    __slots__ = ("_cumulative", "_names", "_only", "_random", "_total")

    def __init__(self, variants: tuple[VariantSpec, ...], seed: int | None = None) -> None:
        live = [v for v in variants if v.weight > 0]
        self._names = [v.name for v in live]
        self._cumulative = list(itertools.accumulate(v.weight for v in live))
        self._total = self._cumulative[-1]
        self._only = self._names[0] if len(live) == 1 else None
        self._random = random.Random(seed)

    def pick(self) -> str:
        if self._only is not None:
            return self._only
        point = self._random.random() * self._total
        return self._names[bisect.bisect_right(self._cumulative, point)]
