"""Building the filter chains: each configured filter constructed once, a frozen chain per variant.

Done when the config is loaded (and again on a reload), never per request;
:mod:`proxy.judge.chain` runs what is built here.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from filters.base import STAGES, Filter, Stage, declared
from filters.registry import FilterLoadError, resolve_filter_class
from proxy.config.filter_specs import stream_policy
from proxy.config.schema import Config, ConfigError, FilterSpec, StreamPolicy
from proxy.judge.build_notice import Notify, describe, noticed_if_slow
from proxy.judge.chain import CHAIN_PARTS, BoundFilter, Chain
from proxy.judge.offload import ThreadOffload

log = logging.getLogger("taxmeter.build")


class BuiltFilter(NamedTuple):
    """One configured filter, constructed: its instance, stages and stream policy."""

    instance: Filter
    stages: tuple[Stage, ...]
    stream: StreamPolicy


Built = dict[str, BuiltFilter]


def build_filters(config: Config, notify: Notify | None = None, into: Built | None = None) -> Built:
    """Construct each configured filter once; ConfigError names a bad one.

    ``notify`` hears of a filter that takes a while to build (one that loads a
    model), as it starts and when it is done (see proxy.judge.build_notice).
    ``into`` is filled as they are built: when one fails, it holds those built
    before it, for the caller to close (a running proxy's reload does).
    """
    built: Built = {} if into is None else into
    for i, spec in enumerate(config.filters):
        built[spec.name] = _construct(f"filters[{i}]", spec, notify)
    return built


def build_chains(
    config: Config, filters: Built, offload: ThreadOffload | None = None
) -> dict[str, Chain]:
    """One frozen chain per variant, sharing the filter instances.

    ``offload``: the worker threads the cpu_bound filters are called on, the
    caller's to close; None, a pool of this build's own, left to the
    interpreter's exit (for a build that never runs its chains, or a test).
    """
    offload = ThreadOffload() if offload is None else offload
    chains: dict[str, Chain] = {}
    for variant in config.variants:
        parts: dict[str, list[BoundFilter]] = {k: [] for k in CHAIN_PARTS}
        for spec in config.filters:
            mode = variant.modes.get(spec.name, spec.mode)
            if spec.name in variant.disable or mode == "off":
                continue
            instance, filter_stages, policy = filters[spec.name]
            optional = declared(instance)
            bound = BoundFilter(
                spec.name,
                mode,
                spec.timeout_ms / 1000,
                spec.on_error == "closed",
                instance,
                policy,
                offload if optional.cpu_bound else None,
                optional.max_match_chars,
            )
            # An observing filter changes nothing, so by default it runs after the
            # response, where it costs the client nothing.
            later = "later_" if mode == "observe" and not spec.observe_inline else ""
            for stage in filter_stages:
                if later:
                    parts[f"later_{stage}"].append(bound)
                elif stage == "input" and spec.parallel:
                    parts["input_parallel"].append(bound)
                else:
                    parts[stage].append(bound)
                if stage == "output" and spec.at_stream_end:
                    parts[f"{later}stream_end"].append(bound)
        chains[variant.name] = Chain(variant.name, parts)
    return chains


def _construct(key: str, spec: FilterSpec, notify: Notify | None) -> BuiltFilter:
    try:
        cls = resolve_filter_class(spec.type)
    except FilterLoadError as exc:
        raise ConfigError(f"{key}.type", f"filter {spec.name!r}: {exc}") from exc
    supported: tuple[str, ...] = cls.stages
    if spec.stages is None:
        # Left out, a filter judges everything it can: a prompt, an answer and a stream.
        stages = tuple(s for s in STAGES if s in supported)
    else:
        for stage in spec.stages:
            if stage not in supported:
                raise ConfigError(
                    f"{key}.stages",
                    f"filter {spec.name!r} does not support the {stage} stage "
                    f"(it supports {', '.join(supported)})",
                )
        stages = spec.stages
    try:
        with noticed_if_slow(describe(spec.name, spec.type, cls), notify):
            instance = cls(**spec.params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}.params", f"filter {spec.name!r}: {exc}") from exc
    except Exception as exc:
        # Anything else (a file it cannot open, a model it cannot load) still stops
        # start-up as a config error naming the filter, not as a traceback; the
        # traceback goes to the log at debug level, for the filter's author.
        log.debug("filter %r failed to build", spec.name, exc_info=True)
        raise ConfigError(
            key, f"filter {spec.name!r} could not be built: {type(exc).__name__}: {exc}"
        ) from exc
    policy = spec.stream
    defaults = declared(cls).stream_defaults
    if not spec.stream_given and defaults is not None:
        # A filter too costly to call on every token says how often it runs by default.
        policy = stream_policy(f"{key}.stream (the filter's stream_defaults)", defaults)
    return BuiltFilter(instance, stages, policy)
