"""The configuration: YAML in, frozen and validated specs out.

Every key is optional. Unknown keys, wrong types and bad values raise
:class:`ConfigError`, whose message starts with the dotted path of the key
(``filters[1].timeout_ms: ...``), so the user knows what to fix. Filters are
only described here; :mod:`proxy.judge.chain` loads and constructs them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from proxy.config.ablation import parse_ablation
from proxy.config.canary import CanaryConfig, parse_canary
from proxy.config.checks import SUPPORTED_STAGES as SUPPORTED_STAGES
from proxy.config.checks import ConfigError as ConfigError
from proxy.config.checks import (
    check_amount,
    check_bool,
    check_choice,
    check_identifier,
    check_int,
    check_known,
    check_mapping,
    check_number,
    check_positive,
    check_str,
    check_str_list,
    check_upstream_url,
)
from proxy.config.control import AdminConfig, AssignmentConfig, parse_admin, parse_assignment
from proxy.config.filter_specs import MODES as MODES
from proxy.config.filter_specs import FilterSpec as FilterSpec
from proxy.config.filter_specs import StreamPolicy as StreamPolicy
from proxy.config.filter_specs import parse_filters
from proxy.config.readiness import ReadinessConfig, parse_readiness
from proxy.config.routes import RouteTable, parse_routes
from proxy.config.sections import Check, choice, given, keys_of, or_none, whole


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    total_timeout_s: float = 600.0
    max_connections: int = 1024
    # The most a judged answer may be, after inflation (502 beyond).
    max_response_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """What taxmeter exports. ``metrics: false`` records nothing (Prometheus metrics
    and /stats stay empty): only to measure what measuring costs."""

    metrics: bool = True
    trace_content: bool = False  # prompt and completion text in spans (after redaction)
    access_log: str = "off"  # off | stdout | a file path
    access_log_sample: float = 1.0  # the share of requests logged
    access_log_content: bool = False  # prompt and completion text (after redaction)


@dataclass(frozen=True, slots=True)
class VariantSpec:
    name: str
    weight: float = 100.0
    disable: frozenset[str] = frozenset()
    modes: Mapping[str, str] = field(default_factory=dict)  # filter name -> mode override
    ablates: str | None = None  # added by ablation: the one filter it disables


@dataclass(frozen=True, slots=True)
class Config:
    listen: HostPort = HostPort("127.0.0.1", 8080)
    metrics_listen: HostPort = HostPort("127.0.0.1", 9464)
    upstream: UpstreamConfig = UpstreamConfig()
    filters: tuple[FilterSpec, ...] = ()
    variants: tuple[VariantSpec, ...] = (VariantSpec("default"),)
    assignment: AssignmentConfig = field(default_factory=AssignmentConfig)
    admin: AdminConfig | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    # A slot is taken once the body is read (see proxy.exchange.limits); None: no limit.
    max_concurrent_requests: int | None = 1024
    client_header_timeout_s: float = 60.0  # request line and headers
    client_body_timeout_s: float = 60.0  # the longest silence while a body is read
    keepalive_timeout_s: float = 75.0  # an idle client connection
    max_client_connections: int = 10_000  # beyond it, a new connection is closed at once
    stats_reservoir_size: int = 10_000
    telemetry: TelemetryConfig = TelemetryConfig()
    # Parts of a prompt no text filter can read (images, audio, files, token ids).
    uninspected: str = "allow"  # allow | block
    # The built-in routes and the config's (see proxy.config.routes), matched once per request.
    routes: RouteTable = field(default_factory=RouteTable)
    # Routes no surface judges: forwarded as route "other" (pass), or 403 (block).
    unjudged_routes: str = "pass"  # pass | block | pass_all (see proxy.exchange.route_gate)
    canary: CanaryConfig | None = None  # labelled checks of the live chains (proxy.control.canary)
    # What /readyz waits for besides the proxy: the model server (proxy.config.readiness).
    readiness: ReadinessConfig = field(default_factory=ReadinessConfig)
    # What a core-hour of CPU costs: filters' CPU priced in proxy.measure.cost.
    cpu_usd_per_core_hour: float = 0.0
    # The sha256 of the bytes the config was loaded from (load_config): the
    # file's, or the built-in default's; "none" for a config built in code.
    sha256: str = "none"

    def with_overrides(
        self,
        upstream: str | None = None,
        listen: str | None = None,
        metrics_listen: str | None = None,
    ) -> Config:
        """The config with the CLI's flags applied (flags win over the file)."""
        new = self
        if upstream is not None:
            url = check_upstream_url("--upstream", upstream)
            new = replace(new, upstream=replace(new.upstream, url=url))
        if listen is not None:
            new = replace(new, listen=parse_host_port("--listen", listen))
        if metrics_listen is not None:
            new = replace(new, metrics_listen=parse_host_port("--metrics-listen", metrics_listen))
        return new


# -- loading ----------------------------------------------------------------


def load_config(path: str | Path | None) -> Config:
    """Parse a YAML file into a Config; None gives the built-in default config."""
    if path is None:
        data = resources.files("proxy.config").joinpath("default_config.yaml").read_bytes()
        source = "default config"
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from exc
        source = str(path)
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{source} is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{source} is not valid YAML: {exc}") from exc
    config = parse_config({} if raw is None else raw)
    return replace(config, sha256=hashlib.sha256(data).hexdigest())


def parse_config(raw: Any) -> Config:
    top = check_mapping("", raw)
    check_known("", top, TOP_KEYS)
    config = replace(Config(), **given("", top, _TOP_CHECKS, _TOP_NULLABLE))
    filters = parse_filters(top.get("filters"))
    variants = _variants(top.get("variants"), {f.name for f in filters})
    variants += tuple(
        VariantSpec(a.variant, a.weight, frozenset({a.filter}), ablates=a.filter)
        for a in parse_ablation(top.get("ablation"), filters, {v.name for v in variants})
    )
    return replace(config, filters=filters, variants=variants)


def _telemetry(key: str, raw: Any) -> TelemetryConfig:
    section = check_mapping(key, raw)
    check_known(key, section, TELEMETRY_KEYS)
    return replace(TelemetryConfig(), **given(f"{key}.", section, _TELEMETRY_CHECKS))


def _share(key: str, value: Any) -> float:
    share = check_number(key, value)
    if not 0 <= share <= 1:
        raise ConfigError(key, f"expected 0 to 1, got {share}")
    return share


def parse_host_port(key: str, value: Any) -> HostPort:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected HOST:PORT, got {value!r}")
    host, sep, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(key, f"expected HOST:PORT with a port from 0 to 65535, got {value!r}")
    return HostPort(host, int(port_text))


def _upstream(raw: Any) -> UpstreamConfig:
    section = check_mapping("upstream", raw)
    check_known("upstream", section, UPSTREAM_KEYS)
    return replace(UpstreamConfig(), **given("upstream.", section, _UPSTREAM_CHECKS, ("url",)))


def _variants(raw: Any, filter_names: set[str]) -> tuple[VariantSpec, ...]:
    if raw is None:
        return (VariantSpec("default"),)
    section = check_mapping("variants", raw)
    if not section:
        raise ConfigError("variants", "expected at least one variant")
    checks = _variant_checks(filter_names)
    variants: list[VariantSpec] = []
    for name, item in section.items():
        key = f"variants.{name}"
        check_identifier(key, name)
        entry = check_mapping(key, {} if item is None else item)
        check_known(key, entry, VARIANT_KEYS)
        variants.append(VariantSpec(name, **given(f"{key}.", entry, checks)))
    if sum(v.weight for v in variants) <= 0:
        raise ConfigError("variants", "the weights add up to 0; at least one must be > 0")
    return tuple(variants)


def _variant_checks(filter_names: set[str]) -> dict[str, Check]:
    def weight(key: str, value: Any) -> float:
        weight = check_number(key, value)
        if weight < 0:
            raise ConfigError(key, f"expected a number >= 0, got {weight}")
        return weight

    def disable(key: str, value: Any) -> frozenset[str]:
        disabled = check_str_list(key, value)
        for filter_name in disabled:
            if filter_name not in filter_names:
                raise ConfigError(key, f"no filter named {filter_name!r}")
        return frozenset(disabled)

    def modes(key: str, value: Any) -> dict[str, str]:
        modes = check_mapping(key, value)
        for filter_name, mode in modes.items():
            if filter_name not in filter_names:
                raise ConfigError(key, f"no filter named {filter_name!r}")
            check_choice(f"{key}.{filter_name}", mode, MODES)
        return dict(modes)

    return {"weight": weight, "disable": disable, "modes": modes}


# What each key's value is checked as, in the order they are checked; a key
# the section leaves out keeps its default, and so does a null one in the
# *_NULLABLE sections (see proxy.config.sections).
TOP_KEYS = keys_of(Config, leave_out=("sha256",), more=("ablation",))
_TOP_CHECKS: dict[str, Check] = {
    "listen": parse_host_port,
    "metrics_listen": parse_host_port,
    "upstream": whole(_upstream),
    "max_body_bytes": check_int,
    "max_concurrent_requests": or_none(check_int),
    # The client side's timeouts and limits, named and sized as nginx's.
    "client_header_timeout_s": check_positive,
    "client_body_timeout_s": check_positive,
    "keepalive_timeout_s": check_positive,
    "max_client_connections": check_int,
    "uninspected": choice(check_choice, ("allow", "block")),
    "routes": whole(parse_routes),
    "unjudged_routes": choice(check_choice, ("pass", "block", "pass_all")),
    "cpu_usd_per_core_hour": check_amount,
    "stats_reservoir_size": check_int,
    "telemetry": _telemetry,
    "assignment": whole(parse_assignment),
    "admin": whole(lambda raw: parse_admin(raw, parse_host_port)),
    "canary": whole(parse_canary),
    "readiness": whole(parse_readiness),
}
_TOP_NULLABLE = ("cpu_usd_per_core_hour", "telemetry", "assignment")
TELEMETRY_KEYS = keys_of(TelemetryConfig)
_TELEMETRY_CHECKS: dict[str, Check] = {
    "metrics": check_bool,
    "trace_content": check_bool,
    "access_log_content": check_bool,
    "access_log": check_str,
    "access_log_sample": _share,
}
UPSTREAM_KEYS = keys_of(UpstreamConfig)
VARIANT_KEYS = keys_of(VariantSpec, leave_out=("name", "ablates"))
_UPSTREAM_CHECKS: dict[str, Check] = {
    "url": check_upstream_url,
    "connect_timeout_s": check_positive,
    "read_timeout_s": check_positive,
    "total_timeout_s": check_positive,
    "max_connections": check_int,
    "max_response_bytes": check_int,
}
