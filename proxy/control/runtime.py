"""The running configuration: filters, chains and variant weights that can change live.

Each request takes the current :class:`Snapshot` when it starts and keeps it
to the end, so a change (a mode switched through the admin API, new weights,
a reloaded file) applies from the next request on and never mid-request.
Snapshots are immutable; a change builds a new one and swaps it in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from filters.base import Close, Filter, closer
from proxy.config.schema import MODES, Config, ConfigError, load_config
from proxy.control.variants import Assigner
from proxy.judge.build import Built, build_chains, build_filters
from proxy.judge.build_notice import Notify
from proxy.judge.chain import Chain
from proxy.judge.offload import ThreadOffload

log = logging.getLogger("taxmeter.runtime")


@dataclass(frozen=True, slots=True)
class Snapshot:
    config: Config
    filters: Built
    chains: dict[str, Chain]
    assigner: Assigner


class Runtime:
    """Holds the current snapshot and makes every change through one door."""

    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        environ: Mapping[str, str] | None = None,
        notify: Notify | None = None,
    ) -> None:
        """``environ``: where secrets named by the config are read (the salt, the admin token);
        ``notify``: hears of a filter slow to build at start-up (proxy.judge.build_notice)."""
        self.config_path = config_path
        self._environ: Mapping[str, str] = {} if environ is None else environ
        # The worker threads of cpu_bound filters: every snapshot's chains share them.
        self._offload = ThreadOffload()
        self.current = self._snapshot(config, build_filters(config, notify))
        # Filters replaced by a reload are closed when the last request using them
        # ends: requests in flight (and their deferred observers) keep their snapshot.
        self._users: dict[int, int] = {}  # id of a Built -> requests using it
        self._retired: dict[int, Built] = {}  # replaced, still in use
        self._closing: set[asyncio.Task[None]] = set()
        self._reloading = asyncio.Lock()  # one reload at a time, in the order asked
        self._signalled: set[asyncio.Task[None]] = set()  # reloads asked for by SIGHUP
        self._listeners: list[Callable[[Config], None]] = []

    def _snapshot(self, config: Config, filters: Built) -> Snapshot:
        chains = build_chains(config, filters, self._offload)
        return Snapshot(config, filters, chains, Assigner(config, self._environ))

    def on_change(self, listener: Callable[[Config], None]) -> None:
        """Call ``listener`` with the new config after every change (a mode, weights, a
        reload, by the admin API or SIGHUP), on the loop."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener(self.config)

    @property
    def config(self) -> Config:
        return self.current.config

    def acquire(self) -> Snapshot:
        """The current snapshot, for one request; hand it back with :meth:`release`."""
        snapshot = self.current
        key = id(snapshot.filters)
        self._users[key] = self._users.get(key, 0) + 1
        return snapshot

    def release(self, snapshot: Snapshot) -> None:
        key = id(snapshot.filters)
        left = self._users[key] - 1
        if left:
            self._users[key] = left
            return
        del self._users[key]
        retired = self._retired.pop(key, None)
        if retired is not None:
            self._close(retired)

    def set_mode(self, name: str, mode: str) -> None:
        """Switch one filter to enforce, observe or off (KeyError, ValueError)."""
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        specs = self.config.filters
        if not any(f.name == name for f in specs):
            raise KeyError(name)
        new_specs = tuple(replace(f, mode=mode) if f.name == name else f for f in specs)
        old = next(f.mode for f in specs if f.name == name)
        self.current = self._snapshot(replace(self.config, filters=new_specs), self.current.filters)
        self._changed()
        log.warning("filter %s: mode %s -> %s", name, old, mode)

    def set_weights(self, weights: dict[str, float]) -> None:
        """New weights for configured variants (KeyError, ValueError)."""
        variants = self.config.variants
        names = {v.name for v in variants}
        for name, weight in weights.items():
            if name not in names:
                raise KeyError(name)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise ValueError(f"{name}: expected a weight >= 0, got {weight!r}")
        new = tuple(replace(v, weight=float(weights.get(v.name, v.weight))) for v in variants)
        if sum(v.weight for v in new) <= 0:
            raise ValueError("the weights add up to 0; at least one must be > 0")
        self.current = self._snapshot(replace(self.config, variants=new), self.current.filters)
        self._changed()
        log.warning("variant weights: %s", {v.name: v.weight for v in new})

    async def reload(self) -> Config:
        """Re-read the config file; on any error the running config stays (ConfigError).

        The file is read and the new filters built on a worker thread (a filter that
        loads a model takes seconds), so the loop keeps serving meanwhile; the new
        snapshot is swapped in on the loop.
        """
        async with self._reloading:
            built: Built = {}
            try:
                new = await asyncio.to_thread(self._prepare_reload, built)
            except ConfigError:
                self._close(built)  # those built before the bad one: open for nothing
                raise
            return self._apply(new, built)

    def _prepare_reload(self, built: Built) -> Config:
        """The new config, its filters built into ``built``; touches no running state
        (any thread)."""
        if self.config_path is None:
            raise ConfigError("", "taxmeter was started without --config: there is no file")
        new = load_config(self.config_path)
        path = Path(self.config_path)
        fixed = {
            "listen": new.listen != self.config.listen,
            "metrics_listen": new.metrics_listen != self.config.metrics_listen,
            "upstream": new.upstream.url is not None and new.upstream != self.config.upstream,
            "admin": new.admin != self.config.admin,
            "readiness": new.readiness != self.config.readiness,
        }
        for key, changed in fixed.items():
            if changed:
                log.warning("reload of %s: %s changed; it takes effect on restart", path, key)
        # These are fixed for the process's life: the running values stay.
        new = replace(
            new,
            listen=self.config.listen,
            metrics_listen=self.config.metrics_listen,
            upstream=self.config.upstream,
            admin=self.config.admin,
            readiness=self.config.readiness,
        )
        build_filters(new, into=built)  # raises ConfigError: nothing has changed yet
        return new

    def _apply(self, new: Config, filters: Built) -> Config:
        old = self.current.filters
        try:
            snapshot = self._snapshot(new, filters)
        except ConfigError:
            self._close(filters)  # built for nothing: the running config stays
            raise
        self.current = snapshot
        self._changed()
        if id(old) in self._users:
            self._retired[id(old)] = old
        else:
            self._close(old)
        log.warning(
            "reloaded %s: filters %s; variants %s",
            self.config_path,
            [f"{f.name} ({f.mode})" for f in new.filters] or "none",
            {v.name: v.weight for v in new.variants},
        )
        return new

    def reload_or_keep(self) -> None:
        """Reload on a signal, in the background: a bad file is refused and logged, and
        the running config stays."""
        task = asyncio.get_running_loop().create_task(self._reload_or_keep())
        self._signalled.add(task)
        task.add_done_callback(self._signalled.discard)

    async def _reload_or_keep(self) -> None:
        try:
            await self.reload()
        except ConfigError as exc:
            log.warning("reload refused, the running config stays: %s", exc)

    def _close(self, built: Built) -> None:
        for instance, *_ in built.values():
            close = closer(instance)
            if close is not None:
                task = asyncio.get_running_loop().create_task(_close_quietly(instance, close))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """At shutdown: close every filter still open, current and retired, and the
        worker threads of the cpu_bound ones."""
        self._offload.close()
        for built in [*self._retired.values(), self.current.filters]:
            self._close(built)
        self._retired.clear()
        while self._closing:
            await asyncio.gather(*self._closing)

    @property
    def retired_open(self) -> int:
        """Replaced filter sets not closed yet: requests still use them."""
        return len(self._retired)


async def _close_quietly(instance: Filter, close: Close) -> None:
    try:
        await close()
    except Exception:
        log.exception("closing filter %r failed", instance)
