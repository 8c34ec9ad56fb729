"""The proxy's request handler: judge the prompt, forward, judge the completion.

Each request owns one :class:`~proxy.measure.timeline.Timeline`; this module and
:mod:`proxy.exchange.respond` mark it, and at the end it goes to the metrics in one
place (:meth:`ProxyHandler._finish`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any

import orjson
from aiohttp import web

from proxy.control.runtime import Runtime, Snapshot
from proxy.exchange.answer_judge import judge_answer
from proxy.exchange.headers import client_response_headers, upstream_request_headers
from proxy.exchange.limits import Admission, busy_message, too_busy
from proxy.exchange.request_body import (
    BodyError,
    BodyTimeout,
    BodyTooLarge,
    decoded,
    passed_chunks,
    read_body,
)
from proxy.exchange.respond import (
    Exchange,
    pass_through,
    send,
    send_error,
    send_upstream_failure,
    stamp,
)
from proxy.exchange.route_gate import gate, refuse
from proxy.exchange.streaming import relay_stream
from proxy.formats.json_exact import TooDeep, parse
from proxy.formats.json_pieces import EncodedDocument, encode_document
from proxy.judge.chain import BoundFilter, Chain
from proxy.judge.observe import Later, Observer, observe
from proxy.judge.stream_judge import StreamJudge
from proxy.measure.access_log import AccessLog
from proxy.measure.arrival import request_done, take_arrival
from proxy.measure.metrics import Metrics
from proxy.measure.stats import Stats
from proxy.measure.timeline import Timeline
from proxy.measure.tracing import Tracing, inject
from proxy.upstream.call import (
    Fetched,
    UpstreamError,
    UpstreamPool,
    fetch,
    upstream_target,
)
from proxy.upstream.response import UpstreamMalformed

log = logging.getLogger("taxmeter.proxy")

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
        admission: Admission,
        tracing: Tracing | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self._runtime = runtime
        self._admission = admission
        self._body_silence_s = runtime.config.client_body_timeout_s
        self._metrics = metrics
        self._stats = stats
        self._observer = observer
        self._export = runtime.config.telemetry.metrics
        self._max_body = runtime.config.max_body_bytes
        self._refuse_uninspected = runtime.config.uninspected == "block"
        self._tracing = tracing
        self._access_log = access_log
        self.upstream: UpstreamPool | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        timeline = Timeline(take_arrival(request))
        snapshot = self._runtime.acquire()  # this request's config, to its end
        variant = snapshot.assigner.assign(request)
        chain = snapshot.chains[variant]
        config = snapshot.config
        route = gate(request, config.routes, config.unjudged_routes)
        ex = Exchange(timeline, route.label, variant, _request_id(request), surface=route.surface)
        ex.judge_answer = route.judge_answer
        ex.expose_variant = snapshot.assigner.expose
        ex.method = request.method
        if self._tracing is not None:
            ex.trace = self._tracing.begin(request.headers, ex.route, request.method)
        if chain.observes_later:
            ex.later = Later()
        self._metrics.assigned(variant)
        self._metrics.inflight.inc()
        try:
            if route.refusal is not None:  # before any body is read: never forwarded
                return await refuse(request, ex, route.refusal)
            return await self._serve(request, ex, chain)
        except asyncio.CancelledError:
            ex.outcome = "client_disconnect"
            raise
        except Exception as exc:  # a bug of ours: answered in the API's shape, logged once
            return await self._internal_error(request, ex, exc)
        finally:
            if ex.admitted:
                self._admission.leave()
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

    async def _internal_error(
        self, request: web.Request, ex: Exchange, exc: Exception
    ) -> web.StreamResponse:
        ex.outcome = "internal_error"
        log.error(
            "internal error serving %s %s (request %s)",
            request.method,
            ex.route,
            ex.request_id,
            exc_info=exc,
        )
        response = ex.response
        if response is not None and response.prepared:
            # Part of an answer went out: the client must see it cut, not complete.
            if request.transport is not None:
                request.transport.abort()
            return response
        message = f"taxmeter failed to serve this request (request id {ex.request_id})"
        return await send_error(request, ex, 500, "internal_error", message, "internal_error")

    async def _refused_body(
        self, request: web.Request, ex: Exchange, exc: BodyError
    ) -> web.StreamResponse:
        if isinstance(exc, BodyTimeout):
            self._admission.rejections.count("body_timeout")
        return await _refused_body(request, ex, exc)

    def _admit(self, ex: Exchange) -> bool:
        """Take a concurrency slot, once the body is in hand (see proxy.exchange.limits)."""
        ex.admitted = self._admission.enter()
        ex.rejected = not ex.admitted
        return ex.admitted

    def _record(self, ex: Exchange) -> None:
        """Everything one request contributes, derived once from its timeline."""
        if ex.rejected:
            return  # counted by the admission, apart from the requests it served
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
        surface = ex.surface
        parsed: Any = None
        segments: list[str] = []
        data: Any = None
        inflated = False
        reads_prompt = bool(
            chain.input or chain.input_parallel or chain.later_input or self._refuse_uninspected
        )
        if surface is not None and reads_prompt and request.body_exists:
            # Every Content-Encoding line counts: "identity" then "gzip" is two codings.
            encoding = ", ".join(request.headers.getall("Content-Encoding", ()))
            try:
                raw = await read_body(request, self._max_body, self._body_silence_s)
                body = decoded(raw, encoding, self._max_body)
            except BodyError as exc:
                return await self._refused_body(request, ex, exc)
            # What goes upstream is exactly what was judged: plain, so labelled plain.
            inflated = True
            ex.timeline.mark_body_read()
            if not self._admit(ex):
                return await _too_busy(request, ex, self._admission.limit)
            try:
                parsed = parse(body)
            except orjson.JSONDecodeError:
                return await send_error(
                    request, ex, 400, "invalid_json", "the request body is not valid JSON"
                )
            except TooDeep as exc:
                return await send_error(request, ex, 400, "invalid_body", str(exc))
            # From here the document is the body: the client's bytes are let go
            # and what goes upstream is the encoding of what the filters judged.
            source_bytes = len(body)
            del raw, body
            prompt = surface.prompt(parsed)
            if prompt is None:
                message = f"the request body has no valid '{surface.needs}'"
                return await send_error(request, ex, 400, "invalid_body", message)
            ex.body = parsed
            if prompt.uninspected:
                self._metrics.uninspected_parts(ex.route, prompt.uninspected)
                if self._refuse_uninspected:
                    return await _uninspected(request, ex, prompt.uninspected)
            refs = prompt.texts
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
                    segments = result.segments
            try:
                data = encode_document(parsed, source_bytes)
            except TooDeep as exc:
                return await send_error(request, ex, 400, "invalid_body", str(exc))
            if ex.later is not None:
                ex.later.prompt = segments
        elif request.body_exists:
            # Forwarded as the client sent it: its bytes, encoding and length.
            length = request.content_length
            try:
                if length is not None and length <= _READ_WHOLE_BYTES:
                    data = await read_body(request, self._max_body, self._body_silence_s)
                    if ex.trace is not None:
                        ex.request_raw = bytes(data)
                elif length is not None and length > self._max_body:
                    raise BodyTooLarge(self._max_body)
                else:
                    data = passed_chunks(request, self._max_body, self._body_silence_s)
            except BodyError as exc:
                return await self._refused_body(request, ex, exc)
            ex.timeline.mark_body_read()
            if not self._admit(ex):
                return await _too_busy(request, ex, self._admission.limit)
        elif not self._admit(ex):
            return await _too_busy(request, ex, self._admission.limit)
        parallel = chain.input_parallel if segments else ()
        return await self._forward(request, ex, chain, data, parsed, segments, parallel, inflated)

    async def _forward(
        self,
        request: web.Request,
        ex: Exchange,
        chain: Chain,
        data: Any,
        parsed: Any,
        segments: list[str],
        parallel: tuple[BoundFilter, ...],
        inflated: bool,
    ) -> web.StreamResponse:
        assert self.upstream is not None
        judged = ex.surface is not None and ex.judge_answer
        headers = upstream_request_headers(
            request.headers, request.remote, request.scheme, ex.request_id, judged, inflated
        )
        streamed = data is not None and not isinstance(data, bytes | bytearray | EncodedDocument)
        if streamed and request.content_length is not None:
            # Streamed as it arrives: the client's own length (the pool checks
            # the count against it), or chunked when the client sent it chunked.
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
        except BodyError as exc:
            return await self._refused_body(request, ex, exc)
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
        surface = ex.surface
        if surface is None or not ex.judge_answer or not 200 <= upstream.status < 300:
            # Read decoded by the pool exactly when the answer was to be judged.
            decoded = surface is not None and ex.judge_answer
            return await pass_through(request, ex, upstream, decoded=decoded)
        if fetched.stream and surface.streams:
            judge = StreamJudge(
                chain,
                chain.stream,
                chain.stream_end,
                surface.stream(parsed),
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
        if fetched.body is None:
            # A 2xx that is not an answer of this surface would pass unjudged.
            kind = upstream.headers.get("Content-Type") or "no Content-Type"
            return await send_upstream_failure(
                request, ex, UpstreamMalformed(f"a {upstream.status} answer of {kind}")
            )
        body = fetched.body
        if chain.output or chain.later_output:
            try:
                body = await judge_answer(chain, surface, body, ex)
            except (UpstreamMalformed, TooDeep) as exc:
                return await send_upstream_failure(request, ex, UpstreamMalformed(str(exc)))
        response = web.Response(
            status=upstream.status,
            reason=upstream.reason,
            headers=client_response_headers(upstream.headers, decoded=True),
        )
        response.body = body
        return await send(request, ex, response)


async def _blocked(request: web.Request, ex: Exchange, reason: str | None) -> web.StreamResponse:
    ex.outcome = "blocked"
    message = f"the request was blocked by a content filter: {reason}"
    return await send_error(request, ex, 400, "content_filter", message)


async def _uninspected(request: web.Request, ex: Exchange, kinds: list[str]) -> web.StreamResponse:
    ex.outcome = "blocked"
    what = ", ".join(sorted(set(kinds)))
    message = f"the request has parts no content filter can inspect ({what}); uninspected: block"
    return await send_error(request, ex, 400, "uninspected_content", message)


async def _refused_body(request: web.Request, ex: Exchange, exc: BodyError) -> web.StreamResponse:
    # After a 413, aiohttp reads and drops the rest of the body (for up to its
    # lingering time), so the client, still sending, gets to read the answer.
    # After a silence or an undecodable body the rest is not worth waiting for.
    if exc.status == 413:
        return await send_error(request, ex, exc.status, exc.code, str(exc))
    response = await send_error(request, ex, exc.status, exc.code, str(exc), close=True)
    # aiohttp would go on reading the unread body (for its lingering time, 10 s)
    # before closing; a client that stopped sending gets the close now.
    if request.transport is not None:
        request.transport.close()
    return response


async def _too_busy(request: web.Request, ex: Exchange, limit: int) -> web.StreamResponse:
    body = None
    if ex.surface is not None:  # in the API's own error shape
        message = busy_message(limit)
        body = ex.surface.error_body(message, "concurrency_limit", "rate_limit_error", status=429)
    response = too_busy(limit, body)
    stamp(response, ex)
    await response.prepare(request)
    await response.write_eof()
    return response


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
