"""The proxy's request handler: judge the prompt, forward, judge the completion.

Each request owns one :class:`~proxy.timeline.Timeline`; this module and
:mod:`proxy.respond` mark it, and at the end it goes to the metrics in one
place (:meth:`ProxyHandler._finish`).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import orjson
from aiohttp import web

from proxy.access_log import AccessLog
from proxy.chain import BoundFilter, Chain
from proxy.headers import client_response_headers, upstream_request_headers
from proxy.limits import BodyTooLarge, limited_chunks, too_large
from proxy.metrics import Metrics
from proxy.observe import Later, Observer, observe
from proxy.openai_body import (
    JUDGED_ROUTES,
    block_choice,
    classify,
    completion_refs,
    prompt_refs,
)
from proxy.respond import Exchange, pass_through, send, send_error, send_upstream_failure
from proxy.runtime import Runtime, Snapshot
from proxy.stats import Stats
from proxy.stream_judge import StreamJudge
from proxy.streaming import relay_stream
from proxy.timeline import Timeline
from proxy.tracing import Tracing, inject
from proxy.upstream import (
    Fetched,
    UpstreamError,
    UpstreamPool,
    classify_failure,
    fetch,
    upstream_target,
)
from proxy.upstream_response import UpstreamMalformed, UpstreamResponse
from proxy.wire import request_done, take_arrival

# Bodies up to this size arrive in one read anyway; reading them whole is
# cheaper than streaming them chunked.
_READ_WHOLE_BYTES = 64 * 1024


class ProxyHandler:
    """Forwards every request to the upstream; built once per app."""

    def __init__(
        self,
        runtime: Runtime,
        metrics: Metrics,
        stats: Stats,
        observer: Observer,
        tracing: Tracing | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self._runtime = runtime
        self._metrics = metrics
        self._stats = stats
        self._observer = observer
        self._export = runtime.config.telemetry.metrics
        self._max_body = runtime.config.max_body_bytes
        self._tracing = tracing
        self._access_log = access_log
        self.upstream: UpstreamPool | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        timeline = Timeline(take_arrival(request))
        snapshot = self._runtime.acquire()  # this request's config, to its end
        variant = snapshot.assigner.assign(request)
        chain = snapshot.chains[variant]
        ex = Exchange(timeline, classify(request.path), variant, _request_id(request))
        ex.expose_variant = snapshot.assigner.expose
        ex.method = request.method
        if self._tracing is not None:
            ex.trace = self._tracing.begin(request.headers, ex.route, request.method)
        if chain.observes_later:
            ex.later = Later()
        self._metrics.assigned(variant)
        self._metrics.inflight.inc()
        try:
            return await self._serve(request, ex, chain)
        except asyncio.CancelledError:
            ex.outcome = "client_disconnect"
            raise
        finally:
            request_done(request)
            self._metrics.inflight.dec()
            if ex.later is None or not self._observer.submit(
                self._observe_then_record(ex, snapshot, chain)
            ):
                if ex.later is not None:
                    self._metrics.observations_skipped.inc()
                self._runtime.release(snapshot)
                self._record(ex)

    async def _observe_then_record(self, ex: Exchange, snapshot: Snapshot, chain: Chain) -> None:
        assert ex.later is not None
        try:
            await observe(
                chain,
                ex.later,
                route=ex.route,
                body=ex.body,
                request_id=ex.request_id,
                timeline=ex.timeline,
            )
        finally:
            self._runtime.release(snapshot)
            self._record(ex)

    def _record(self, ex: Exchange) -> None:
        """Everything one request contributes, derived once from its timeline."""
        if not self._export and ex.trace is None and self._access_log is None:
            return
        figures = ex.timeline.breakdown(ex.streamed)
        trace_id = None
        if ex.trace is not None and self._tracing is not None:
            trace_id = self._tracing.export(ex, figures)
        if self._access_log is not None:
            self._access_log.write(ex, figures, trace_id)
        if not self._export:
            return
        calls = ex.timeline.filter_calls
        exemplar = None if trace_id is None else {"trace_id": trace_id}
        self._metrics.record(ex.route, ex.variant, ex.outcome, figures, calls, exemplar)
        self._stats.record(ex.route, ex.variant, ex.outcome, figures, calls)

    async def _serve(self, request: web.Request, ex: Exchange, chain: Chain) -> web.StreamResponse:
        judged = ex.route in JUDGED_ROUTES
        parsed: Any = None
        segments: list[str] = []
        data: Any = None
        if too_large(request.content_length, self._max_body):
            return await _body_too_large(request, ex, self._max_body)
        if judged and (chain.input or chain.input_parallel or chain.later_input):
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return await _body_too_large(request, ex, self._max_body)
            ex.timeline.mark_body_read()
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                return await send_error(
                    request, ex, 400, "invalid_json", "the request body is not valid JSON"
                )
            refs = prompt_refs(ex.route, parsed)
            if refs is None:
                what = "messages" if ex.route == "chat_completions" else "prompt"
                return await send_error(
                    request, ex, 400, "invalid_body", f"the request body has no valid '{what}'"
                )
            ex.body = parsed
            segments = [ref.get() for ref in refs]
            if segments and chain.input:
                result = await chain.run(
                    chain.input,
                    "input",
                    segments,
                    body=parsed,
                    route=ex.route,
                    request_id=ex.request_id,
                    timeline=ex.timeline,
                )
                if result.blocked:
                    return await _blocked(request, ex, result.reason)
                if result.changed:
                    for ref, text in zip(refs, result.segments, strict=True):
                        ref.set(text)
                    body = orjson.dumps(parsed)
                    segments = result.segments
            data = body
            if ex.later is not None:
                ex.later.prompt = segments
        elif request.body_exists:
            length = request.content_length
            if length is not None and length <= _READ_WHOLE_BYTES:
                data = await request.read()
                if ex.trace is not None:
                    ex.request_raw = data
            else:
                data = limited_chunks(request, self._max_body)
            ex.timeline.mark_body_read()
        parallel = chain.input_parallel if segments else ()
        return await self._forward(request, ex, chain, data, parsed, segments, parallel)

    async def _forward(
        self,
        request: web.Request,
        ex: Exchange,
        chain: Chain,
        data: Any,
        parsed: Any,
        segments: list[str],
        parallel: tuple[BoundFilter, ...],
    ) -> web.StreamResponse:
        assert self.upstream is not None
        judged = ex.route in JUDGED_ROUTES
        headers = upstream_request_headers(
            request.headers, request.remote, request.scheme, ex.request_id, judged
        )
        if data is not None and not isinstance(data, bytes) and request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        if ex.trace is not None:
            inject(ex.trace, headers)
        target = upstream_target(request)
        fetching = fetch(self.upstream, request.method, target, headers, data, ex.timeline, judged)
        fetched: Fetched | None = None
        try:
            if parallel:
                task = asyncio.ensure_future(fetching)
                result = await chain.run(
                    parallel,
                    "input",
                    segments,
                    body=parsed,
                    route=ex.route,
                    request_id=ex.request_id,
                    timeline=ex.timeline,
                    critical=False,
                )
                ex.timeline.mark_parallel_done()
                if result.blocked:
                    await _discard(task)
                    return await _blocked(request, ex, result.reason)
                fetched = await task
            else:
                fetched = await fetching
        except BodyTooLarge:
            return await _body_too_large(request, ex, self._max_body)
        except (UpstreamError, TimeoutError) as exc:
            return await send_upstream_failure(request, ex, exc)
        try:
            return await self._answer(request, ex, chain, fetched, parsed)
        finally:
            fetched.close()

    async def _answer(
        self, request: web.Request, ex: Exchange, chain: Chain, fetched: Fetched, parsed: Any
    ) -> web.StreamResponse:
        upstream = fetched.response
        ex.upstream_status = upstream.status
        ex.response_body = fetched.body
        if ex.outcome == "ok":
            ex.outcome = _outcome_of_status(upstream.status)
        judged = ex.route in JUDGED_ROUTES
        if judged and fetched.stream and upstream.status == 200:
            judge = StreamJudge(
                chain,
                chain.stream,
                chain.stream_end,
                ex.route,
                parsed,
                ex.request_id,
                ex.timeline,
                keep_pieces=bool(chain.later_stream or chain.later_stream_end),
            )
            try:
                return await relay_stream(
                    request, ex, judge, upstream, fetched.first_chunk, fetched.first_arrived_ns
                )
            finally:
                ex.finish_reasons, ex.usage = judge.finish_reasons, judge.usage
                if ex.later is not None and judge.pieces:
                    ex.later.stream_pieces = judge.pieces
        if fetched.body is not None and (chain.output or chain.later_output):
            return await self._judge_and_send(request, ex, chain, upstream, fetched.body)
        if fetched.body is not None:
            response = web.Response(
                status=upstream.status,
                reason=upstream.reason,
                headers=client_response_headers(upstream.headers, decoded=True),
            )
            response.body = fetched.body
            return await send(request, ex, response)
        return await pass_through(request, ex, upstream, decoded=judged)

    async def _judge_and_send(
        self,
        request: web.Request,
        ex: Exchange,
        chain: Chain,
        upstream: UpstreamResponse,
        raw: bytes,
    ) -> web.StreamResponse:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        ex.response_body = parsed
        choices = completion_refs(ex.route, parsed)
        if choices is None:
            failure = classify_failure(UpstreamMalformed("not an OpenAI response"))
            return await send_error(
                request, ex, failure.status, failure.code, failure.message, failure.outcome
            )
        changed = False
        for choice, ref in choices:
            if not chain.output:
                if ex.later is not None:
                    ex.later.completions.append(ref.get())
                continue
            result = await chain.run(
                chain.output,
                "output",
                [ref.get()],
                body=parsed,
                route=ex.route,
                request_id=ex.request_id,
                timeline=ex.timeline,
            )
            if result.blocked:
                block_choice(ex.route, choice)
                ex.outcome = "blocked"
                changed = True
            elif result.changed:
                ref.set(result.segments[0])
                changed = True
            if ex.later is not None and not result.blocked:
                ex.later.completions.append(ref.get())
        body = orjson.dumps(parsed) if changed else raw
        headers = client_response_headers(upstream.headers, decoded=True)
        response = web.Response(status=upstream.status, reason=upstream.reason, headers=headers)
        response.body = body
        return await send(request, ex, response)


async def _blocked(request: web.Request, ex: Exchange, reason: str | None) -> web.StreamResponse:
    ex.outcome = "blocked"
    message = f"the request was blocked by a content filter: {reason}"
    return await send_error(request, ex, 400, "content_filter", message)


async def _body_too_large(request: web.Request, ex: Exchange, limit: int) -> web.StreamResponse:
    # aiohttp reads and drops the rest of the body (for up to its lingering
    # time), so the client, still sending, gets to read this answer.
    message = f"the request body is over the maximum of {limit} bytes (max_body_bytes)"
    return await send_error(request, ex, 413, "body_too_large", message)


async def _discard(task: asyncio.Future[Fetched]) -> None:
    """Stop an upstream call whose answer is not wanted (a parallel filter blocked)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is None:
        task.result().response.close()


def _request_id(request: web.BaseRequest) -> str:
    given = request.headers.get("X-Request-Id")
    # Passed through only when it is a sane token; it is echoed in headers and logs.
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    # A random per-process prefix and a counter: unique, and cheaper than uuid4.
    return f"{_id_prefix}{next(_id_counter):020x}"


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = os.urandom(6).hex()
    _id_counter = itertools.count(1)


_id_prefix = ""
_id_counter = itertools.count(1)
_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)


def _outcome_of_status(status: int) -> str:
    if status >= 500:
        return "upstream_error"
    if status >= 400:
        return "client_error"
    return "ok"
