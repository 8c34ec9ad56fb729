"""Judging a prompt: the texts the surface finds in a request, through the input filters.

What goes upstream is exactly what was judged: a redaction is written back
where each text came from, and the document is encoded from there (the
client's bytes are not sent). A prompt the surface cannot read, one with
parts no filter can inspect (``uninspected: block``) or one an input filter
blocks is refused here, in the surface's error shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from proxy.exchange.exchange import Exchange
from proxy.exchange.refusals import blocked, uninspected
from proxy.exchange.respond import send_error
from proxy.formats.json_exact import TooDeep
from proxy.formats.json_pieces import EncodedDocument, encode_document
from proxy.judge.chain import Chain
from proxy.measure.metrics import Metrics


@dataclass(slots=True)
class JudgedPrompt:
    """A prompt that may go upstream: its texts as judged, and the document to send."""

    segments: list[str]
    data: bytes | EncodedDocument


async def judge_prompt(
    request: web.Request,
    ex: Exchange,
    chain: Chain,
    parsed: Any,
    source_bytes: int,
    metrics: Metrics,
    refuse_uninspected: bool,
) -> JudgedPrompt | web.StreamResponse:
    """The prompt judged, or the refusal already sent."""
    surface = ex.surface
    assert surface is not None
    prompt = surface.read_prompt(parsed)
    if prompt is None:
        message = f"the request body has no valid '{surface.needs}'"
        return await send_error(request, ex, 400, "invalid_body", message)
    ex.body = parsed
    if prompt.uninspected:
        metrics.uninspected_parts(ex.route, prompt.uninspected)
        if refuse_uninspected:
            return await uninspected(request, ex, prompt.uninspected)
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
            critical=True,
        )
        if result.blocked:
            return await blocked(request, ex, result.reason)
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
    return JudgedPrompt(segments, data)
