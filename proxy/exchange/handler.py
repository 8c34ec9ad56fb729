"""The proxy's request handler: one request's way through, read top-down.

The gate at its route, its body (the prompt judged, or the body passed on),
the upstream call (with parallel input filters beside it), the answer
(passed through, judged as a stream or judged whole), and at the end the
one recording of its figures. What is an API's own is its surface's
(:mod:`proxy.surfaces`), reached through the surface interface only.

Each request owns one :class:`~proxy.measure.timeline.Timeline`; this module and
:mod:`proxy.exchange.respond` mark it, and at the end it goes to the metrics in one
place (:meth:`ProxyHandler._record`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from proxy.control.runtime import Runtime, Snapshot
from proxy.exchange.answer import judged_stream, judged_whole
from proxy.exchange.exchange import Exchange
from proxy.exchange.headers import upstream_request_headers
from proxy.exchange.limits import Admission
from proxy.exchange.prompt_judge import judge_prompt
from proxy.exchange.refusals import blocked, internal_error, refused_body, refused_busy
from proxy.exchange.request_body import BodyError, BodyTimeout, decoded, passed_body, read_body
from proxy.exchange.request_id import RequestIds
from proxy.exchange.respond import pass_through, send_error, send_upstream_failure
from proxy.exchange.route_gate import gate, refuse
from proxy.formats.json_exact import TooDeep, parse
from proxy.formats.json_pieces import EncodedDocument
from proxy.judge.chain import BoundFilter, Chain
from proxy.judge.observe import Later, Observer, observe
from proxy.measure.access_log import AccessLog
from proxy.measure.arrival import request_done, take_arrival
from proxy.measure.capability import answer_of, capability_of
from proxy.measure.loop_watch import LoopWatch
from proxy.measure.metrics import Metrics
from proxy.measure.stats import Stats
from proxy.measure.timeline import Timeline
from proxy.measure.tracing import Tracing
from proxy.upstream.call import Fetched, UpstreamError, UpstreamPool, fetch, upstream_target

# The longest relayed answer kept to read its usage and finish reasons for the
# record (after it was sent); a longer one is not counted in completion tokens.
_KEPT_FOR_RECORD = 1 << 20


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
        loop_watch: LoopWatch | None = None,
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
        self._loop_watch = loop_watch
        self._ids = RequestIds()
        self.upstream: UpstreamPool | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        timeline = Timeline(take_arrival(request), self._loop_watch)
        snapshot = self._runtime.acquire()  # this request's config, to its end
        variant = snapshot.assigner.assign(request)
        chain = snapshot.chains[variant]
        config = snapshot.config
        route = gate(request, config.routes, config.unjudged_routes)
        ex = Exchange(timeline, route.label, variant, self._ids.of(request), surface=route.surface)
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
            return await self._serve(request, ex, chain, route.judge_prompt)
        except asyncio.CancelledError:
            ex.disconnected()
            raise
        except Exception as exc:  # a bug of ours: answered in the API's shape, logged once
            return await internal_error(request, ex, exc)
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

    async def _serve(
        self, request: web.Request, ex: Exchange, chain: Chain, judge_prompt: bool
    ) -> web.StreamResponse:
        """Read the body: the prompt judged when the surface's is read, else passed on."""
        reads_prompt = judge_prompt and bool(
            chain.input or chain.input_parallel or chain.later_input or self._refuse_uninspected
        )
        if ex.surface is not None and reads_prompt and request.body_exists:
            return await self._judge_prompt(request, ex, chain)
        data: Any = None
        if request.body_exists:
            # Forwarded as the client sent it: its bytes, encoding and length.
            try:
                data = await passed_body(request, self._max_body, self._body_silence_s)
            except BodyError as exc:
                return await self._refused_body(request, ex, exc)
            if ex.trace is not None and isinstance(data, bytes | bytearray):
                ex.request_raw = bytes(data)
            ex.timeline.mark_body_read()
        if not self._admit(ex):
            return await refused_busy(request, ex, self._admission.limit)
        return await self._forward(request, ex, chain, data, None, [], (), False)

    async def _judge_prompt(
        self, request: web.Request, ex: Exchange, chain: Chain
    ) -> web.StreamResponse:
        # Every Content-Encoding line counts: "identity" then "gzip" is two codings.
        encoding = ", ".join(request.headers.getall("Content-Encoding", ()))
        try:
            raw = await read_body(request, self._max_body, self._body_silence_s)
            body = decoded(raw, encoding, self._max_body)
        except BodyError as exc:
            return await self._refused_body(request, ex, exc)
        ex.timeline.mark_body_read()
        if not self._admit(ex):
            return await refused_busy(request, ex, self._admission.limit)
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
        judged = await judge_prompt(
            request, ex, chain, parsed, source_bytes, self._metrics, self._refuse_uninspected
        )
        if isinstance(judged, web.StreamResponse):
            return judged  # refused
        # What goes upstream is exactly what was judged: plain, so labelled plain.
        parallel = chain.input_parallel if judged.segments else ()
        return await self._forward(
            request, ex, chain, judged.data, parsed, judged.segments, parallel, True
        )

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
        if ex.trace is not None and self._tracing is not None:
            self._tracing.inject(ex.trace, headers)
        target = upstream_target(request)
        # Read whole when output filters judge it, or when parallel input filters
        # may hold it (its marks then say when it arrived, not when it was let go).
        whole = judged and bool(chain.output or chain.later_output or parallel)
        fetching = fetch(
            self.upstream, request.method, target, headers, data, ex.timeline, judged, whole
        )
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
                    return await blocked(request, ex, result.reason)
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
        ex.answered(upstream.status)
        ex.response_body = fetched.body
        surface = ex.surface
        if surface is None or not ex.judge_answer or not 200 <= upstream.status < 300:
            return await pass_through(request, ex, upstream)
        if fetched.stream and surface.streams:
            return await judged_stream(request, ex, chain, fetched, parsed)
        if fetched.body is None and not (chain.output or chain.later_output):
            # No output filter of this variant judges a whole answer, observers
            # included: it is relayed as it arrives, unparsed; a copy of a small
            # one is kept for the record's usage and finish reasons.
            return await pass_through(request, ex, upstream, keep=_KEPT_FOR_RECORD)
        return await judged_whole(request, ex, chain, fetched)

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
        capability = capability_of(ex, answer_of(ex), calls)
        self._metrics.record(ex.route, ex.variant, ex.outcome, figures, calls, exemplar, capability)
        self._stats.record(ex.route, ex.variant, ex.outcome, figures, calls, capability)

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

    def _admit(self, ex: Exchange) -> bool:
        """Take a concurrency slot, once the body is in hand (see proxy.exchange.limits)."""
        ex.admitted = self._admission.enter()
        ex.rejected = not ex.admitted
        return ex.admitted

    async def _refused_body(
        self, request: web.Request, ex: Exchange, exc: BodyError
    ) -> web.StreamResponse:
        if isinstance(exc, BodyTimeout):
            self._admission.rejections.count("body_timeout")
        return await refused_body(request, ex, exc)


async def _discard(task: asyncio.Future[Fetched]) -> None:
    """Stop an upstream call whose answer is not wanted (a parallel filter blocked)."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is None:
        task.result().response.close()
