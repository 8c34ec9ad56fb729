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

# The client side's timeouts and limits, named and sized as nginx's.
CLIENT_KEYS = (
    "client_header_timeout_s", "client_body_timeout_s", "keepalive_timeout_s",
    "max_client_connections",
)  # fmt: skip
TOP_KEYS = (
    "listen", "metrics_listen", "upstream", "filters", "variants", "assignment", "admin",
    "max_body_bytes", "max_concurrent_requests", "stats_reservoir_size", "telemetry",
    "uninspected", "routes", "unjudged_routes", *CLIENT_KEYS, "cpu_usd_per_core_hour",
    "canary", "ablation", "readiness",
)  # fmt: skip
TELEMETRY_KEYS = (
    "metrics", "trace_content", "access_log", "access_log_sample", "access_log_content",
)  # fmt: skip


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
    config = Config()
    if "listen" in top:
        config = replace(config, listen=parse_host_port("listen", top["listen"]))
    if "metrics_listen" in top:
        config = replace(
            config, metrics_listen=parse_host_port("metrics_listen", top["metrics_listen"])
        )
    if "upstream" in top:
        config = replace(config, upstream=_upstream(top["upstream"]))
    if "max_body_bytes" in top:
        config = replace(config, max_body_bytes=check_int("max_body_bytes", top["max_body_bytes"]))
    if "max_concurrent_requests" in top:
        limit = top["max_concurrent_requests"]
        if limit is not None:
            limit = check_int("max_concurrent_requests", limit)
        config = replace(config, max_concurrent_requests=limit)
    config = _client_limits(config, top)
    if "uninspected" in top:
        policy = check_choice("uninspected", top["uninspected"], ("allow", "block"))
        config = replace(config, uninspected=policy)
    if "routes" in top:
        config = replace(config, routes=parse_routes(top["routes"]))
    if "unjudged_routes" in top:
        policy = check_choice(
            "unjudged_routes", top["unjudged_routes"], ("pass", "block", "pass_all")
        )
        config = replace(config, unjudged_routes=policy)
    if top.get("cpu_usd_per_core_hour") is not None:
        rate = check_amount("cpu_usd_per_core_hour", top["cpu_usd_per_core_hour"])
        config = replace(config, cpu_usd_per_core_hour=rate)
    if "stats_reservoir_size" in top:
        size = check_int("stats_reservoir_size", top["stats_reservoir_size"])
        config = replace(config, stats_reservoir_size=size)
    if top.get("telemetry") is not None:
        section = check_mapping("telemetry", top["telemetry"])
        config = replace(config, telemetry=_telemetry(section))
    if top.get("assignment") is not None:
        config = replace(config, assignment=parse_assignment(top["assignment"]))
    if "admin" in top:
        config = replace(config, admin=parse_admin(top["admin"], parse_host_port))
    if "canary" in top:
        config = replace(config, canary=parse_canary(top["canary"]))
    if "readiness" in top:
        config = replace(config, readiness=parse_readiness(top["readiness"]))
    filters = parse_filters(top.get("filters"))
    variants = _variants(top.get("variants"), {f.name for f in filters})
    variants += tuple(
        VariantSpec(a.variant, a.weight, frozenset({a.filter}), ablates=a.filter)
        for a in parse_ablation(top.get("ablation"), filters, {v.name for v in variants})
    )
    return replace(config, filters=filters, variants=variants)


def _client_limits(config: Config, top: Mapping[str, Any]) -> Config:
    timeouts = {key: check_positive(key, top[key]) for key in CLIENT_KEYS[:3] if key in top}
    config = replace(
        config,
        client_header_timeout_s=timeouts.get(
            "client_header_timeout_s", config.client_header_timeout_s
        ),
        client_body_timeout_s=timeouts.get("client_body_timeout_s", config.client_body_timeout_s),
        keepalive_timeout_s=timeouts.get("keepalive_timeout_s", config.keepalive_timeout_s),
    )
    if "max_client_connections" in top:
        most = check_int("max_client_connections", top["max_client_connections"])
        config = replace(config, max_client_connections=most)
    return config


def _telemetry(section: Mapping[str, Any]) -> TelemetryConfig:
    check_known("telemetry", section, TELEMETRY_KEYS)
    telemetry = TelemetryConfig()
    flags = {
        key: check_bool(f"telemetry.{key}", section.get(key, getattr(telemetry, key)))
        for key in ("metrics", "trace_content", "access_log_content")
    }
    telemetry = replace(
        telemetry,
        metrics=flags["metrics"],
        trace_content=flags["trace_content"],
        access_log_content=flags["access_log_content"],
    )
    if "access_log" in section:
        target = check_str("telemetry.access_log", section["access_log"])
        telemetry = replace(telemetry, access_log=target)
    if "access_log_sample" in section:
        share = check_number("telemetry.access_log_sample", section["access_log_sample"])
        if not 0 <= share <= 1:
            raise ConfigError("telemetry.access_log_sample", f"expected 0 to 1, got {share}")
        telemetry = replace(telemetry, access_log_sample=share)
    return telemetry


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
    check_known(
        "upstream",
        section,
        (
            "url", "connect_timeout_s", "read_timeout_s", "total_timeout_s", "max_connections",
            "max_response_bytes",
        ),
    )  # fmt: skip
    upstream = UpstreamConfig()
    if "url" in section and section["url"] is not None:
        upstream = replace(upstream, url=check_upstream_url("upstream.url", section["url"]))
    timeouts = {
        key: check_positive(f"upstream.{key}", section[key])
        for key in ("connect_timeout_s", "read_timeout_s", "total_timeout_s")
        if key in section
    }
    upstream = replace(
        upstream,
        connect_timeout_s=timeouts.get("connect_timeout_s", upstream.connect_timeout_s),
        read_timeout_s=timeouts.get("read_timeout_s", upstream.read_timeout_s),
        total_timeout_s=timeouts.get("total_timeout_s", upstream.total_timeout_s),
    )
    if "max_connections" in section:
        upstream = replace(
            upstream,
            max_connections=check_int("upstream.max_connections", section["max_connections"]),
        )
    if "max_response_bytes" in section:
        most = check_int("upstream.max_response_bytes", section["max_response_bytes"])
        upstream = replace(upstream, max_response_bytes=most)
    return upstream


def _variants(raw: Any, filter_names: set[str]) -> tuple[VariantSpec, ...]:
    if raw is None:
        return (VariantSpec("default"),)
    section = check_mapping("variants", raw)
    if not section:
        raise ConfigError("variants", "expected at least one variant")
    variants: list[VariantSpec] = []
    for name, item in section.items():
        key = f"variants.{name}"
        check_identifier(key, name)
        entry = check_mapping(key, {} if item is None else item)
        check_known(key, entry, ("weight", "disable", "modes"))
        variant = VariantSpec(name=name)
        if "weight" in entry:
            weight = check_number(f"{key}.weight", entry["weight"])
            if weight < 0:
                raise ConfigError(f"{key}.weight", f"expected a number >= 0, got {weight}")
            variant = replace(variant, weight=weight)
        if "disable" in entry:
            disabled = check_str_list(f"{key}.disable", entry["disable"])
            for filter_name in disabled:
                if filter_name not in filter_names:
                    raise ConfigError(f"{key}.disable", f"no filter named {filter_name!r}")
            variant = replace(variant, disable=frozenset(disabled))
        if "modes" in entry:
            modes = check_mapping(f"{key}.modes", entry["modes"])
            for filter_name, mode in modes.items():
                if filter_name not in filter_names:
                    raise ConfigError(f"{key}.modes", f"no filter named {filter_name!r}")
                check_choice(f"{key}.modes.{filter_name}", mode, MODES)
            variant = replace(variant, modes=dict(modes))
        variants.append(variant)
    if sum(v.weight for v in variants) <= 0:
        raise ConfigError("variants", "the weights add up to 0; at least one must be > 0")
    return tuple(variants)
