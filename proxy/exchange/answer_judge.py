"""Judging a whole (non-streamed) answer: each part of it, the surface's way.

Each :class:`~proxy.surfaces.base.AnswerPart` (a choice, an output item, a
message) is judged as one text by the output filters; a block withholds the
part as its API does, a redaction is written back where each text came from,
and either drops the part's logprobs, which would spell the text out again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from proxy.formats.json_exact import dumps, needs_exact, parse
from proxy.judge.chain import Chain
from proxy.surfaces.base import Surface
from proxy.surfaces.unheard_of import with_the_rest
from proxy.upstream.response import UpstreamMalformed

if TYPE_CHECKING:
    from proxy.exchange.exchange import Exchange


async def judge_answer(chain: Chain, surface: Surface, raw: bytes, ex: Exchange) -> bytes:
    """The answer to send: ``raw`` itself, or re-encoded with what the filters changed.

    Raises UpstreamMalformed when ``raw`` is not an answer of the surface, and
    TooDeep when it cannot be re-encoded.
    """
    try:
        # Read fast: nearly every answer goes out as it came. Long numbers are
        # read exactly only when the answer is re-encoded.
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamMalformed(f"not a {surface.label} answer: not JSON") from exc
    ex.response_body = document
    parts = surface.answer(document)
    if parts is None:
        raise UpstreamMalformed(f"not a {surface.label} answer")
    with_the_rest(document, parts, surface.answer_opaque)
    edits: dict[int, list[str] | None] = {}  # position -> new texts (None: withheld)
    for position, part in enumerate(parts):
        texts = [ref.get() for ref in part.texts]
        if not texts:
            continue
        if not chain.output:
            if ex.later is not None:
                ex.later.completions.append("\n\n".join(texts))
            continue
        result = await chain.run(
            chain.output,
            "output",
            texts,
            body=ex.body,  # the request's, as at every stage (not the answer)
            route=ex.route,
            request_id=ex.request_id,
            timeline=ex.timeline,
            critical=True,
        )
        if result.blocked:
            ex.blocked()
            edits[position] = None
            continue
        if result.changed:
            edits[position] = result.segments
        if ex.later is not None:
            ex.later.completions.append("\n\n".join(result.segments))
    if not edits:
        return raw
    if needs_exact(raw):
        document = parse(raw)  # the same answer, every number exact
        parts = surface.answer(document)
        assert parts is not None  # the same document, so the same shape
        with_the_rest(document, parts, surface.answer_opaque)
    for position, judged in edits.items():
        part = parts[position]
        if judged is None:
            part.withhold()
        else:
            for ref, text in zip(part.texts, judged, strict=True):
                ref.set(text)
        part.drop_tokens()
    ex.response_body = document
    return dumps(document)
