"""Assigning each request to exactly one variant (A/B arm).

In order: the ``X-Taxmeter-Variant`` header when the config allows it, the
request also carries the admin token (``X-Taxmeter-Admin-Token``) and it
names a configured variant; a keyed hash of the sticky key (a header's
value, or the client address) when there is one; otherwise at random. Both
the hash and the random draw pick by weight. The result is always a
configured variant's name, so no request can create a label value.

The sticky hash is keyed with a secret salt (``assignment.salt_env``): with a
plain hash a client could search offline for a key that lands in the arm
with the fewest filters, and an arm with fewer filters is a way around them.
The override needs the admin token for the same reason.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import itertools
import random
from collections.abc import Mapping

from aiohttp import web

from proxy.config.control import ADMIN_TOKEN_HEADER, OVERRIDE_HEADER
from proxy.config.schema import Config, ConfigError

_HASH_SPAN = float(1 << 64)


class Assigner:
    """Built once per config snapshot; ``assign`` runs per request."""

    __slots__ = (
        "_admin_token",
        "_allow_override",
        "_by_client_address",
        "_cumulative",
        "_names",
        "_only",
        "_random",
        "_salt",
        "_sticky_header",
        "_total",
        "configured",
        "expose",
    )

    def __init__(self, config: Config, environ: Mapping[str, str], seed: int | None = None) -> None:
        """``environ``: where the salt and the admin token are read from.

        Raises ConfigError when ``assignment.salt_env`` names an empty variable.
        """
        live = [v for v in config.variants if v.weight > 0]
        self.configured = frozenset(v.name for v in config.variants)
        self._names = [v.name for v in live]
        self._cumulative = list(itertools.accumulate(v.weight for v in live))
        self._total = self._cumulative[-1]
        self._only = self._names[0] if len(live) == 1 else None
        self._random = random.Random(seed)
        assignment = config.assignment
        self._salt = _salt(assignment.salt_env, environ)
        self._admin_token = b""
        if config.admin is not None:
            self._admin_token = environ.get(config.admin.token_env, "").encode()
        # No admin token, no override: anyone could otherwise pick their arm.
        self._allow_override = assignment.allow_override and bool(self._admin_token)
        self._sticky_header = assignment.sticky_header
        self._by_client_address = assignment.sticky == "client_address"
        self.expose = assignment.expose

    def assign(self, request: web.BaseRequest) -> str:
        if self._allow_override:
            wanted = request.headers.get(OVERRIDE_HEADER)
            if wanted is not None and wanted in self.configured and self._is_admin(request):
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

    def _is_admin(self, request: web.BaseRequest) -> bool:
        given = request.headers.get(ADMIN_TOKEN_HEADER, "").encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self._admin_token)

    def point_of(self, key: str) -> float:
        """A stable point in [0, 1) for a sticky key: the same key and salt, the same point."""
        data = key.encode("utf-8", "surrogateescape")
        digest = hashlib.blake2b(data, digest_size=8, key=self._salt).digest()
        return int.from_bytes(digest, "big") / _HASH_SPAN

    def pick(self, point: float) -> str:
        """The variant at ``point`` in [0, 1) of the weights laid end to end."""
        return self._names[bisect.bisect_right(self._cumulative, point * self._total)]


def _salt(variable: str | None, environ: Mapping[str, str]) -> bytes:
    if variable is None:
        return b""
    salt = environ.get(variable, "")
    if not salt:
        raise ConfigError("assignment.salt_env", f"{variable} holds no salt")
    # blake2b takes a key of up to 64 bytes; a longer secret is hashed down to that.
    raw = salt.encode()
    return raw if len(raw) <= 64 else hashlib.blake2b(raw).digest()
