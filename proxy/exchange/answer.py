"""A judged request's answer on its way to the client: judged as a stream, or whole.

Only a 2xx answer of the request's surface gets here (anything else passes
through as it came, see :func:`proxy.exchange.respond.pass_through`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.exchange.answer_judge import judge_answer
from proxy.exchange.exchange import Exchange
from proxy.exchange.headers import client_response_headers
from proxy.exchange.respond import send, send_upstream_failure
from proxy.exchange.streaming import relay_stream
from proxy.formats.json_exact import TooDeep
from proxy.judge.chain import Chain
from proxy.judge.stream_judge import StreamJudge
from proxy.upstream.call import Fetched
from proxy.upstream.response import UpstreamMalformed


async def judged_stream(
    request: web.Request, ex: Exchange, chain: Chain, fetched: Fetched, parsed: Any
) -> web.StreamResponse:
    """A stream through the stream stage: its text judged as it arrives."""
    assert ex.surface is not None
    judge = StreamJudge(
        chain,
        chain.stream,
        chain.stream_end,
        ex.surface.stream(parsed),
        ex.route,
        parsed,
        ex.request_id,
        ex.timeline,
        keep_pieces=bool(chain.later_stream or chain.later_stream_end),
    )
    try:
        return await relay_stream(
            request, ex, judge, fetched.response, fetched.first_chunk, fetched.first_arrived_ns
        )
    finally:
        ex.finish_reasons, ex.usage = judge.finish_reasons, judge.usage
        if ex.later is not None and judge.pieces:
            ex.later.stream_pieces = judge.pieces


async def judged_whole(
    request: web.Request, ex: Exchange, chain: Chain, fetched: Fetched
) -> web.StreamResponse:
    """A whole answer, each part of it judged by the output filters, then sent."""
    assert ex.surface is not None
    upstream = fetched.response
    if fetched.body is None:
        # A 2xx that is not an answer of this surface would pass unjudged.
        kind = upstream.headers.get("Content-Type") or "no Content-Type"
        return await send_upstream_failure(
            request, ex, UpstreamMalformed(f"a {upstream.status} answer of {kind}")
        )
    body = fetched.body
    if chain.output or chain.later_output:
        try:
            body = await judge_answer(chain, ex.surface, body, ex)
        except (UpstreamMalformed, TooDeep) as exc:
            return await send_upstream_failure(request, ex, UpstreamMalformed(str(exc)))
    response = web.Response(
        status=upstream.status,
        reason=upstream.reason,
        headers=client_response_headers(upstream.headers, decoded=True),
    )
    response.body = body
    return await send(request, ex, response)
