"""The proxy's request handler: judge the prompt, forward, judge the completion.

Each request owns one :class:`~proxy.timeline.Timeline`; this module marks
it, and at the end hands it to the metrics in one place (:meth:`_finish`).
Responses are written here (prepare, write, write_eof) rather than returned
for aiohttp to write, so the last mark is taken after the last byte.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from proxy.chain import Chain
from proxy.errors import error_body
from proxy.headers import client_response_headers, upstream_request_headers
from proxy.metrics import Metrics
from proxy.openai_body import (
    JUDGED_ROUTES,
    block_choice,
    classify,
    completion_refs,
    prompt_refs,
)
from proxy.timeline import Timeline
from proxy.upstream import body_chunks, classify_failure, upstream_url
from proxy.variants import VariantPicker

log = logging.getLogger("taxmeter.proxy")

# Bodies up to this size arrive in one read anyway; reading them whole is
# cheaper than streaming them chunked.
_READ_WHOLE_BYTES = 64 * 1024


@dataclass(slots=True)
class _Exchange:
    """One request's state on its way through the handler."""

    timeline: Timeline
    route: str
    variant: str
    request_id: str
    outcome: str = "ok"
    streamed: bool = False
    extra_headers: dict[str, str] = field(default_factory=dict)


class ProxyHandler:
    """Forwards every request to the upstream; built once per app."""

    def __init__(
        self,
        upstream_base: str,
        chains: dict[str, Chain],
        picker: VariantPicker,
        metrics: Metrics,
    ) -> None:
        self._base = upstream_base
        self._chains = chains
        self._picker = picker
        self._metrics = metrics
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        timeline = Timeline()
        variant = self._picker.pick()
        ex = _Exchange(timeline, classify(request.path), variant, _request_id(request))
        self._metrics.inflight.inc()
        try:
            return await self._serve(request, ex, self._chains[variant])
        except asyncio.CancelledError:
            ex.outcome = "client_disconnect"
            raise
        finally:
            self._metrics.inflight.dec()
            self._finish(ex)

    def _finish(self, ex: _Exchange) -> None:
        figures = ex.timeline.breakdown(ex.streamed)
        self._metrics.record(ex.route, ex.variant, ex.outcome, figures, ex.timeline.filter_calls)

    async def _serve(self, request: web.Request, ex: _Exchange, chain: Chain) -> web.StreamResponse:
        judged = ex.route in JUDGED_ROUTES
        judge_input = judged and chain.has("input")
        judge_output = judged and chain.has("output")
        data: Any = None
        if judge_input:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge as exc:
                return await self._error(request, ex, 413, "body_too_large", exc.text or "")
            ex.timeline.mark_body_read()
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                return await self._error(
                    request, ex, 400, "invalid_json", "the request body is not valid JSON"
                )
            refs = prompt_refs(ex.route, parsed)
            if refs is None:
                what = "messages" if ex.route == "chat_completions" else "prompt"
                return await self._error(
                    request, ex, 400, "invalid_body", f"the request body has no valid '{what}'"
                )
            if refs:
                result = await chain.run(
                    "input",
                    [ref.get() for ref in refs],
                    body=parsed,
                    route=ex.route,
                    request_id=ex.request_id,
                    timeline=ex.timeline,
                )
                if result.blocked:
                    ex.outcome = "blocked"
                    message = f"the request was blocked by a content filter: {result.reason}"
                    return await self._error(request, ex, 400, "content_filter", message)
                if result.changed:
                    for ref, text in zip(refs, result.segments, strict=True):
                        ref.set(text)
                    body = orjson.dumps(parsed)
            data = body
        elif request.body_exists:
            length = request.content_length
            if length is not None and length <= _READ_WHOLE_BYTES:
                data = await request.read()
            else:
                data = body_chunks(request)
            ex.timeline.mark_body_read()
        return await self._forward(request, ex, chain, data, judge_output)

    async def _forward(
        self,
        request: web.Request,
        ex: _Exchange,
        chain: Chain,
        data: Any,
        judge_output: bool,
    ) -> web.StreamResponse:
        assert self.session is not None
        headers = upstream_request_headers(
            request.headers, request.remote, request.scheme, ex.request_id, judge_output
        )
        if data is not None and not isinstance(data, bytes) and request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)
        ex.timeline.mark_upstream_sent()
        try:
            upstream = await self.session.request(
                request.method,
                upstream_url(self._base, request),
                headers=headers,
                data=data,
                allow_redirects=False,
                auto_decompress=judge_output,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return await self._upstream_failed(request, ex, exc)
        ex.timeline.mark_upstream_headers()
        try:
            if ex.outcome == "ok":
                ex.outcome = _outcome_of_status(upstream.status)
            content_type = upstream.headers.get("Content-Type", "")
            if (
                judge_output
                and upstream.status == 200
                and content_type.startswith("application/json")
            ):
                return await self._judge_and_send(request, ex, chain, upstream)
            return await self._stream(request, ex, upstream, decoded=judge_output)
        finally:
            upstream.release()

    async def _judge_and_send(
        self,
        request: web.Request,
        ex: _Exchange,
        chain: Chain,
        upstream: aiohttp.ClientResponse,
    ) -> web.StreamResponse:
        try:
            raw = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return await self._upstream_failed(request, ex, exc)
        ex.timeline.mark_upstream_last_byte()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
        choices = completion_refs(ex.route, parsed)
        if choices is None:
            failure = classify_failure(aiohttp.ClientPayloadError("not an OpenAI response"))
            return await self._error(
                request, ex, failure.status, failure.code, failure.message, failure.outcome
            )
        changed = False
        for choice, ref in choices:
            result = await chain.run(
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
        body = orjson.dumps(parsed) if changed else raw
        headers = client_response_headers(upstream.headers, decoded=True)
        response = web.Response(status=upstream.status, reason=upstream.reason, headers=headers)
        response.body = body
        return await self._send(request, ex, response)

    async def _stream(
        self,
        request: web.Request,
        ex: _Exchange,
        upstream: aiohttp.ClientResponse,
        decoded: bool,
    ) -> web.StreamResponse:
        """Pass the response through chunk by chunk, adding no buffering."""
        response = web.StreamResponse(
            status=upstream.status,
            reason=upstream.reason,
            headers=client_response_headers(upstream.headers, decoded),
        )
        if upstream.content_length is not None and not (
            decoded and "Content-Encoding" in upstream.headers
        ):
            response.content_length = upstream.content_length
        ex.streamed = upstream.headers.get("Content-Type", "").startswith("text/event-stream")
        self._stamp(response, ex)
        await response.prepare(request)
        content = upstream.content
        try:
            chunk = await content.readany()
            ex.timeline.mark_upstream_first_byte()
            while chunk:
                await response.write(chunk)
                ex.timeline.mark_client_first_byte()
                chunk = await content.readany()
            ex.timeline.mark_upstream_last_byte()
        except (aiohttp.ClientError, TimeoutError) as exc:
            ex.outcome = classify_failure(exc).outcome
            log.warning("upstream failed mid-response: %r", exc)
            return _abort(request, response, upstream)
        except ConnectionResetError:
            ex.outcome = "client_disconnect"
            return _abort(request, response, upstream)
        try:
            await response.write_eof()
        except ConnectionResetError:
            ex.outcome = "client_disconnect"
            return _abort(request, response, upstream)
        ex.timeline.mark_client_last_byte()
        return response

    async def _upstream_failed(
        self, request: web.Request, ex: _Exchange, exc: BaseException
    ) -> web.StreamResponse:
        failure = classify_failure(exc)
        log.warning("upstream request failed (%s): %r", failure.code, exc)
        return await self._error(
            request, ex, failure.status, failure.code, failure.message, failure.outcome
        )

    async def _error(
        self,
        request: web.Request,
        ex: _Exchange,
        status: int,
        code: str,
        message: str,
        outcome: str | None = None,
    ) -> web.StreamResponse:
        if outcome is not None:
            ex.outcome = outcome
        elif ex.outcome == "ok":
            ex.outcome = "client_error"
        response = web.Response(
            status=status, body=error_body(message, code), content_type="application/json"
        )
        return await self._send(request, ex, response)

    async def _send(
        self, request: web.Request, ex: _Exchange, response: web.Response
    ) -> web.StreamResponse:
        self._stamp(response, ex)
        try:
            await response.prepare(request)
            ex.timeline.mark_client_first_byte()
            await response.write_eof()
        except ConnectionResetError:
            ex.outcome = "client_disconnect"
            return response
        ex.timeline.mark_client_last_byte()
        return response

    @staticmethod
    def _stamp(response: web.StreamResponse, ex: _Exchange) -> None:
        response.headers["X-Request-Id"] = ex.request_id
        response.headers["Server-Timing"] = ex.timeline.server_timing()


def _request_id(request: web.BaseRequest) -> str:
    given = request.headers.get("X-Request-Id")
    # Passed through only when it is a sane token; it is echoed in headers and logs.
    if given and len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex


def _outcome_of_status(status: int) -> str:
    if status >= 500:
        return "upstream_error"
    if status >= 400:
        return "client_error"
    return "ok"


def _abort(
    request: web.BaseRequest, response: web.StreamResponse, upstream: aiohttp.ClientResponse
) -> web.StreamResponse:
    """End a response already under way so the client sees it is incomplete."""
    upstream.close()
    request.protocol.force_close()
    return response
