"""The ``readiness`` section: what /readyz waits for besides the proxy itself.

By default /readyz answers 503 while the model server does not accept
connections, so Kubernetes sends no traffic to a pod whose model is down or
still starting. ``upstream: false`` makes the sidecar ready regardless (its
clients then get 502 ``upstream_unreachable`` instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.config.checks import check_bool, check_known, check_mapping, check_positive
from proxy.config.sections import Check, given, keys_of


@dataclass(frozen=True, slots=True)
class ReadinessConfig:
    # /readyz reflects whether the model server accepts a TCP connection.
    upstream: bool = True
    # One check is reused this long (the proxy's own connects refresh it in between),
    # so probes at any rate cost the model server at most one connect per interval.
    interval_s: float = 2.0
    # The check's bound: /readyz answers within it, whatever the network does.
    timeout_s: float = 1.0


def parse_readiness(raw: Any) -> ReadinessConfig:
    section = check_mapping("readiness", {} if raw is None else raw)
    check_known("readiness", section, READINESS_KEYS)
    return ReadinessConfig(**given("readiness.", section, _CHECKS))


READINESS_KEYS = keys_of(ReadinessConfig)
_CHECKS: dict[str, Check] = {
    "upstream": check_bool,
    "interval_s": check_positive,
    "timeout_s": check_positive,
}
