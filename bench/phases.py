"""A phase of the run: one model server, and every proxy started in front of it.

The non-streamed scenarios and the streamed ones need the model server to
answer differently (at once, or like a GPU), so each gets its own model
server process and its own set of proxies pointed at it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from litellm_target import start_litellm
from procs import Child, stop
from rig import Quiet, Rig
from targets import (
    LABELS,
    TRACED,
    Target,
    check_config,
    model_url,
    start_bare,
    start_model,
    start_nginx,
    start_otlp_sink,
    start_taxmeter,
    tracing_env,
)


@dataclass
class Phase:
    rig: Rig
    order: list[str]  # the targets that started, direct first
    notes: list[str] = field(default_factory=list)


async def _start(
    key: str,
    tmp: Path,
    upstream: str,
    cores: set[int],
    args: argparse.Namespace,
    sink: str | None = None,
) -> Target:
    if key == "nginx":
        return await start_nginx(tmp, upstream, cores)
    if key == "bare":
        return await start_bare(tmp, upstream, cores)
    if key == "litellm":
        return await start_litellm(args.litellm_venv, tmp, upstream, args.key, cores)
    config, refused = check_config(tmp, key, upstream)
    if refused is not None:
        raise RuntimeError(f"taxmeter check-config refuses its config: {refused}")
    env = tracing_env(key, sink) if key in TRACED and sink is not None else None
    return await start_taxmeter(key, config, tmp, cores, env)


@contextlib.asynccontextmanager
async def start_targets(
    tmp: Path,
    keys: list[str],
    load: set[int],
    proxy_core: int,
    timing: tuple[float, float],
    args: argparse.Namespace,
    quiet: Quiet,
) -> AsyncIterator[Phase]:
    """The model server (``timing``: TTFT ms, tokens/s) and every target that starts."""
    model = await start_model(tmp, load, *timing)
    upstream = await model_url(model)
    targets = {"direct": Target("direct", upstream)}
    notes = []
    sink: tuple[Child, str] | None = None
    try:
        if TRACED.keys() & set(keys):
            sink = await start_otlp_sink(tmp, load)
        for key in keys:
            if key == "direct":
                continue
            try:
                sink_url = None if sink is None else sink[1]
                targets[key] = await _start(key, tmp, upstream, {proxy_core}, args, sink_url)
            except (RuntimeError, OSError) as exc:
                reason = str(exc).strip().splitlines()[0]
                notes.append(f"{LABELS[key]}: not measured: {reason}")
                print(f"bench: {LABELS[key]}: not measured: {reason}")
        port = upstream.rsplit(":", 1)[1]

        async def restart_model() -> Child:
            return await start_model(tmp, load, *timing, listen=f"127.0.0.1:{port}")

        rig = Rig(model, targets, load, proxy_core, quiet, restart_model)
        rig.pause_all()
        order = [k for k in keys if k in targets]
        try:
            yield Phase(rig, order, notes)
        finally:
            notes += rig.events
            model = rig.model
    finally:
        for target in targets.values():
            if target.child is not None:
                await stop(target.child)
        if sink is not None:
            notes.append(await _spans_received(sink[1]))
            await stop(sink[0])
        await stop(model)


async def _spans_received(sink: str) -> str:
    """What the trace receiver got: the tracing rows really exported their spans."""
    label = " and ".join(LABELS[key] for key in TRACED)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{sink}/count") as answer:
            got = await answer.json()
    except aiohttp.ClientError as exc:
        return f"{label}: the trace receiver did not answer ({exc})"
    return f"{label}: {got['spans']} spans received in {got['exports']} OTLP exports"
