"""Assigning each request to exactly one variant (A/B arm).

In order: the ``X-Taxmeter-Variant`` header when the config allows it and it
names a configured variant; a stable hash of the sticky key (a header's
value, or the client address) when there is one; otherwise at random. Both
the hash and the random draw pick by weight. The result is always a
configured variant's name, so no request can create a label value.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random

from aiohttp import web

from proxy.config import Config
from proxy.config_control import OVERRIDE_HEADER

_HASH_SPAN = float(1 << 64)


class Assigner:
    """Built once per config snapshot; ``assign`` runs per request."""

    __slots__ = (
        "_allow_override",
        "_by_client_address",
        "_cumulative",
        "_names",
        "_only",
        "_random",
        "_sticky_header",
        "_total",
        "configured",
        "expose",
    )

    def __init__(self, config: Config, seed: int | None = None) -> None:
        live = [v for v in config.variants if v.weight > 0]
        self.configured = frozenset(v.name for v in config.variants)
        self._names = [v.name for v in live]
        self._cumulative = list(itertools.accumulate(v.weight for v in live))
        self._total = self._cumulative[-1]
        self._only = self._names[0] if len(live) == 1 else None
        self._random = random.Random(seed)
        assignment = config.assignment
        self._allow_override = assignment.allow_override
        self._sticky_header = assignment.sticky_header
        self._by_client_address = assignment.sticky == "client_address"
        self.expose = assignment.expose

    def assign(self, request: web.BaseRequest) -> str:
        if self._allow_override:
            wanted = request.headers.get(OVERRIDE_HEADER)
            if wanted is not None and wanted in self.configured:
                return wanted
        if self._only is not None:
            return self._only
        key: str | None = None
        if self._sticky_header is not None:
            key = request.headers.get(self._sticky_header)
        elif self._by_client_address:
            key = request.remote
        if key:
            return self.pick(self.point_of(key))
        return self.pick(self._random.random())

    @staticmethod
    def point_of(key: str) -> float:
        """A stable point in [0, 1) for a sticky key: the same key, the same point."""
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        return int.from_bytes(digest, "big") / _HASH_SPAN

    def pick(self, point: float) -> str:
        """The variant at ``point`` in [0, 1) of the weights laid end to end."""
        return self._names[bisect.bisect_right(self._cumulative, point * self._total)]
