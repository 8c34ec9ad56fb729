"""``POST /admin/check``: a text or a request tried against the live filters; nothing is sent.

For CI pipelines and operators: what would the running configuration do
with this prompt? The body (:mod:`proxy.control.check_body`) names a text or
a whole request, a stage and optionally a variant; the answer gives each
filter of that variant's chain for the stage, in the order a request calls
them, with its action, reason, latency and CPU, the outcome (blocked, by
whom, or allowed) and the text or request as the proxy would forward it::

    {"variant", "stage", "route",
     "verdict": {"action": "block" | "redact" | "allow", "blocked_by", "reason"},
     "filters": [{"name", "mode", "placement", "action", "reason", "blocks",
                  "latency_s", "cpu_s"}, ...],
     "text": "..." | null}                       (the text form)
     "request": {...} | null, "uninspected": [...] (the request form)

A request is read by its surface's adapter, as the proxy reads it, and its
redactions are written back where each text came from. The filters are the
running snapshot's (see :mod:`proxy.judge.trial`); the snapshot is held to
the end of the check, as a request holds it. Only the admin app serves this:
on the proxy's listener it would be an oracle to tune prompts against.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from proxy.control.check_body import CheckAsk, CheckError, read_ask
from proxy.control.runtime import Runtime, Snapshot
from proxy.formats.errors import error_body
from proxy.formats.json_exact import TooDeep, dumps, parse
from proxy.judge.trial import FilterTrial, Trial, run_trial, untried
from proxy.surfaces import surface_for

log = logging.getLogger("taxmeter.admin")

# What a filter reads as a check's request id (FilterContext.request_id).
CHECK_REQUEST_ID = "admin-check"
# Checks run on the proxy's event loop, beside its traffic: a CI job that
# sends a burst of them is held to a few at a time (429 beyond).
MAX_CONCURRENT_CHECKS = 4


def check_handler(runtime: Runtime) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of ``POST /admin/check`` (behind the admin app's token check)."""
    running = 0

    async def check(request: web.Request) -> web.Response:
        nonlocal running
        if running >= MAX_CONCURRENT_CHECKS:
            return _error(
                CheckError(
                    429, "too_many_checks", f"{MAX_CONCURRENT_CHECKS} checks are running already"
                )
            )
        running += 1
        try:
            config = runtime.config
            raw = await _read_bounded(request, config.max_body_bytes, config.client_body_timeout_s)
            try:
                document = parse(raw)
            except orjson.JSONDecodeError:
                raise CheckError(400, "invalid_json", "the body is not valid JSON") from None
            # This check's filters, to its end; taken once the body is in, as a
            # request takes them, so a slow upload keeps no replaced filters open.
            snapshot = runtime.acquire()
            try:
                answer = await run_check(snapshot, read_ask(document, snapshot.config))
            finally:
                runtime.release(snapshot)
            return web.Response(body=dumps(answer), content_type="application/json")
        except CheckError as exc:
            return _error(exc)
        except TooDeep as exc:
            return _error(CheckError(400, "invalid_body", str(exc)))
        except Exception:  # a bug (ours or a filter's): answered in JSON, as the proxy does
            log.exception("internal error serving a check")
            return web.Response(
                status=500,
                body=error_body("taxmeter failed to serve this check", "internal_error"),
                content_type="application/json",
            )
        finally:
            running -= 1

    return check


async def run_check(snapshot: Snapshot, ask: CheckAsk) -> dict[str, Any]:
    """Run ``ask`` through its variant's chain in ``snapshot``: the answer's document."""
    chain = snapshot.chains[ask.variant]
    head = {"variant": ask.variant, "stage": ask.stage, "route": ask.route}
    if ask.text is not None:
        trial = await run_trial(
            chain,
            ask.stage,
            [ask.text],
            route=ask.route,
            request_id=CHECK_REQUEST_ID,
            every=ask.every,
        )
        text = None if trial.blocked else trial.segments[0]
        return {**head, **_outcome(trial), "text": text}
    surface = surface_for(ask.route)
    assert surface is not None  # the route is a surface's label (check_body)
    body = ask.request
    prompt = surface.read_prompt(body)
    if prompt is None:
        raise CheckError(
            400, "invalid_body", f"request: not a {ask.route} request: no valid '{surface.needs}'"
        )
    refs = prompt.texts
    uninspected = sorted(set(prompt.uninspected))
    refusal = None
    if uninspected and snapshot.config.uninspected == "block":
        # The proxy refuses it before any filter is called.
        what = ", ".join(uninspected)
        refusal = f"the request has parts no content filter can inspect ({what})"
        refusal += "; uninspected: block"
    if refusal is not None and not ask.every:
        verdict = {"action": "block", "blocked_by": None, "reason": refusal}
        filters = [_filter(f) for f in untried(chain, ask.stage)]
        return {**head, "verdict": verdict, "filters": filters, "request": None,
                "uninspected": uninspected}  # fmt: skip
    trial = await run_trial(
        chain,
        ask.stage,
        [ref.get() for ref in refs],
        body=body,
        route=ask.route,
        request_id=CHECK_REQUEST_ID,
        every=ask.every,
    )
    outcome = _outcome(trial)
    if refusal is not None:
        outcome["verdict"] = {"action": "block", "blocked_by": None, "reason": refusal}
    elif trial.changed and not trial.blocked:
        for ref, text in zip(refs, trial.segments, strict=True):
            ref.set(text)
    forwarded = None if trial.blocked or refusal is not None else body
    return {**head, **outcome, "request": forwarded, "uninspected": uninspected}


def _outcome(trial: Trial) -> dict[str, Any]:
    action = "block" if trial.blocked else "redact" if trial.changed else "allow"
    return {
        "verdict": {"action": action, "blocked_by": trial.blocked_by, "reason": trial.reason},
        "filters": [_filter(f) for f in trial.filters],
    }


def _filter(trial: FilterTrial) -> dict[str, Any]:
    return {
        "name": trial.name,
        "mode": trial.mode,
        "placement": trial.placement,
        "action": trial.action,
        "reason": trial.reason,
        "blocks": trial.blocks,
        "latency_s": trial.seconds,
        "cpu_s": trial.cpu_seconds,
    }


async def _read_bounded(request: web.Request, limit: int, silence_s: float) -> bytes:
    """The body, refused past ``limit`` bytes before more of it is read, and cut
    after ``silence_s`` without a byte (client_body_timeout_s, as for a request):
    a stalled upload would hold one of the few check slots for ever."""
    too_large = CheckError(
        413, "body_too_large", f"the body is over the maximum of {limit} bytes (max_body_bytes)"
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    data = bytearray()
    while True:
        try:
            async with asyncio.timeout(silence_s):
                chunk = await request.content.readany()
        except TimeoutError:
            message = f"the body stopped arriving for {silence_s:g} s (client_body_timeout_s)"
            raise CheckError(408, "client_body_timeout", message) from None
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise too_large


def _error(exc: CheckError) -> web.Response:
    error_type = "rate_limit_error" if exc.status == 429 else "invalid_request_error"
    response = web.Response(
        status=exc.status,
        body=error_body(str(exc), exc.code, error_type),
        content_type="application/json",
    )
    if exc.status in (408, 413):
        response.force_close()  # the rest of the body is not waited for
    return response
