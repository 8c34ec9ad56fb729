"""The configuration: YAML in, frozen and validated specs out.

Every key is optional. Unknown keys, wrong types and bad values raise
:class:`ConfigError`, whose message starts with the dotted path of the key
(``filters[1].timeout_ms: ...``), so the user knows what to fix. Filters are
only described here; :mod:`proxy.chain` loads and constructs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from filters.base import Stage
from proxy.config_checks import SUPPORTED_STAGES as SUPPORTED_STAGES
from proxy.config_checks import ConfigError as ConfigError
from proxy.config_checks import (
    check_bool,
    check_choice,
    check_identifier,
    check_int,
    check_kind,
    check_known,
    check_mapping,
    check_number,
    check_positive,
    check_stages,
    check_str,
    check_str_list,
    check_url,
)

MODES = ("enforce", "observe", "off")
FILTER_KEYS = (
    "name", "type", "stages", "mode", "timeout_ms", "on_error", "params",
    "parallel", "at_stream_end", "stream",
)  # fmt: skip
STREAM_KEYS = ("every_tokens", "every_chars", "at_sentence_end", "window_chars", "holdback_chars")
ON_ERROR = ("open", "closed")


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


@dataclass(frozen=True, slots=True)
class StreamPolicy:
    """How often a stream-stage filter runs, on how much text, and what it holds back.

    It runs every ``every_tokens`` content events, or every ``every_chars``
    characters, or at each sentence end (``at_sentence_end``), and sees the
    last ``window_chars`` characters. The last ``holdback_chars`` characters it
    has judged are held from the client until it has judged what follows, so
    that a match split across chunks is caught before any of it is sent.
    """

    every_tokens: int = 1
    every_chars: int = 0
    at_sentence_end: bool = False
    window_chars: int = 512
    holdback_chars: int = 0


@dataclass(frozen=True, slots=True)
class FilterSpec:
    name: str
    type: str
    stages: tuple[Stage, ...] | None = None  # None: every supported stage the filter has
    mode: str = "enforce"
    timeout_ms: float = 100.0
    on_error: str = "open"
    params: Mapping[str, Any] = field(default_factory=dict)
    parallel: bool = False  # input stage: run alongside the upstream call
    at_stream_end: bool = False  # output stage: also judge a streamed completion at its end
    stream: StreamPolicy = StreamPolicy()


@dataclass(frozen=True, slots=True)
class VariantSpec:
    name: str
    weight: float = 100.0
    disable: frozenset[str] = frozenset()
    modes: Mapping[str, str] = field(default_factory=dict)  # filter name -> mode override


@dataclass(frozen=True, slots=True)
class Config:
    listen: HostPort = HostPort("127.0.0.1", 8080)
    metrics_listen: HostPort = HostPort("127.0.0.1", 9464)
    upstream: UpstreamConfig = UpstreamConfig()
    filters: tuple[FilterSpec, ...] = ()
    variants: tuple[VariantSpec, ...] = (VariantSpec("default"),)
    max_body_bytes: int = 32 * 1024 * 1024

    def with_overrides(
        self,
        upstream: str | None = None,
        listen: str | None = None,
        metrics_listen: str | None = None,
    ) -> Config:
        """The config with the CLI's flags applied (flags win over the file)."""
        new = self
        if upstream is not None:
            url = check_url("--upstream", upstream)
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
        text = resources.files("proxy").joinpath("default_config.yaml").read_text("utf-8")
        source = "default config"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from exc
        source = str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{source} is not valid YAML: {exc}") from exc
    return parse_config({} if raw is None else raw)


def parse_config(raw: Any) -> Config:
    top = check_mapping("", raw)
    check_known(
        "", top, ("listen", "metrics_listen", "upstream", "filters", "variants", "max_body_bytes")
    )
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
    filters = _filters(top.get("filters"))
    variants = _variants(top.get("variants"), {f.name for f in filters})
    return replace(config, filters=filters, variants=variants)


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
        ("url", "connect_timeout_s", "read_timeout_s", "total_timeout_s", "max_connections"),
    )
    upstream = UpstreamConfig()
    if "url" in section and section["url"] is not None:
        upstream = replace(upstream, url=check_url("upstream.url", section["url"]))
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
    return upstream


def _filters(raw: Any) -> tuple[FilterSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("filters", f"expected a list of filters, got {check_kind(raw)}")
    specs: list[FilterSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        key = f"filters[{i}]"
        entry = check_mapping(key, item)
        check_known(key, entry, FILTER_KEYS)
        if "name" not in entry and ":" in str(entry.get("type", "")):
            raise ConfigError(f"{key}.name", "required when the type is an import path")
        name = check_identifier(f"{key}.name", entry.get("name", entry.get("type")))
        if name in seen:
            raise ConfigError(f"{key}.name", f"duplicate filter name {name!r}")
        seen.add(name)
        spec = FilterSpec(name=name, type=check_str(f"{key}.type", entry.get("type", name)))
        if "stages" in entry:
            spec = replace(spec, stages=check_stages(f"{key}.stages", entry["stages"]))
        if "mode" in entry:
            spec = replace(spec, mode=check_choice(f"{key}.mode", entry["mode"], MODES))
        if "timeout_ms" in entry:
            spec = replace(
                spec, timeout_ms=check_positive(f"{key}.timeout_ms", entry["timeout_ms"])
            )
        if "on_error" in entry:
            spec = replace(
                spec, on_error=check_choice(f"{key}.on_error", entry["on_error"], ON_ERROR)
            )
        if entry.get("params") is not None:
            spec = replace(spec, params=dict(check_mapping(f"{key}.params", entry["params"])))
        if "parallel" in entry:
            spec = replace(spec, parallel=check_bool(f"{key}.parallel", entry["parallel"]))
            if spec.parallel and spec.stages is not None and "input" not in spec.stages:
                raise ConfigError(f"{key}.parallel", "applies to the input stage only")
        if "at_stream_end" in entry:
            spec = replace(
                spec, at_stream_end=check_bool(f"{key}.at_stream_end", entry["at_stream_end"])
            )
            if spec.at_stream_end and spec.stages is not None and "output" not in spec.stages:
                raise ConfigError(f"{key}.at_stream_end", "applies to the output stage only")
        if entry.get("stream") is not None:
            spec = replace(spec, stream=_stream_policy(f"{key}.stream", entry["stream"]))
        specs.append(spec)
    return tuple(specs)


def _stream_policy(key: str, raw: Any) -> StreamPolicy:
    section = check_mapping(key, raw)
    check_known(key, section, STREAM_KEYS)
    cadences = [k for k in ("every_tokens", "every_chars", "at_sentence_end") if k in section]
    if len(cadences) > 1:
        raise ConfigError(
            key, f"set one of every_tokens, every_chars, at_sentence_end, not {cadences}"
        )
    policy = StreamPolicy()
    if "every_chars" in section:
        every = check_int(f"{key}.every_chars", section["every_chars"])
        policy = replace(policy, every_chars=every, every_tokens=0)
    if "every_tokens" in section:
        policy = replace(
            policy, every_tokens=check_int(f"{key}.every_tokens", section["every_tokens"])
        )
    if "at_sentence_end" in section:
        at_end = check_bool(f"{key}.at_sentence_end", section["at_sentence_end"])
        policy = replace(policy, at_sentence_end=at_end, every_tokens=0 if at_end else 1)
    if "window_chars" in section:
        policy = replace(
            policy, window_chars=check_int(f"{key}.window_chars", section["window_chars"])
        )
    if "holdback_chars" in section:
        holdback = section["holdback_chars"]
        if holdback != 0:
            holdback = check_int(f"{key}.holdback_chars", holdback)
        policy = replace(policy, holdback_chars=holdback)
    if policy.holdback_chars >= policy.window_chars:
        raise ConfigError(f"{key}.holdback_chars", "must be smaller than window_chars")
    return policy


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
