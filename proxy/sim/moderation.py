"""Moderation for the simulated model server: an OpenAI-style classifier and a Llama Guard judge.

Both decide by the same small keyword rules, so a test or a demo knows in
advance what is flagged (``kill``, ``bomb``, ``idiot``, ``suicide``, ...):

- ``POST /v1/moderations`` answers in OpenAI's shape, one result per input (a
  string or an array of strings), every category present with a flag and a
  score. It takes :data:`BASE_S` plus :data:`PER_CHAR_S` per input character,
  like a small classifier; ``x-mock-ttft-ms`` replaces that latency.
- ``POST /v1/chat/completions`` acts as a Llama Guard judge when the model's
  name contains ``llama-guard`` or a message carries Llama Guard's
  ``<BEGIN UNSAFE CONTENT CATEGORIES>`` marker: the reply is ``safe`` or
  ``unsafe`` and a line of hazard codes (``unsafe\\nS1,S9``), paced like any
  other completion. The text judged is what sits between ``<BEGIN
  CONVERSATION>`` and ``<END CONVERSATION>``, else the last message.

The two taxonomies differ as the real ones do: Llama Guard has no hazard for
plain insults, so ``idiot`` is OpenAI ``harassment`` but a ``safe`` judge reply.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any

import orjson
from aiohttp import web

from proxy.sim.fields import header_float, invalid, missing, parse_json_object
from proxy.sim.request import Choice, GenerationJob, content_text, parse_chat
from proxy.sim.text import split_tokens

# The generation endpoints' pacing header; here its value is the whole latency.
LATENCY_HEADER = "x-mock-ttft-ms"
BASE_S = 0.025
PER_CHAR_S = 0.000002
DEFAULT_MODEL = "omni-moderation-latest"

# omni-moderation's categories, in the order OpenAI lists them.
CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip

# A strong keyword flags its categories; a weak one only raises their score,
# so that a score threshold below OpenAI's own flag line has something to catch.
_FLAG_LINE = 0.5
_STRONG_SCORE = 0.92
_WEAK_SCORE = 0.31
_CLEAN_SCORE = 0.0004

_CATEGORIES_MARKER = "<BEGIN UNSAFE CONTENT CATEGORIES>"
_CONVERSATION = re.compile(r"<BEGIN CONVERSATION>(.*)<END CONVERSATION>", re.DOTALL)


def _words(*words: str) -> re.Pattern[str]:
    # Whole words with common endings: "kills" and "bombing" match, "skill" and "method" do not.
    alternatives = "|".join(re.escape(w) for w in words)
    return re.compile(rf"\b(?:{alternatives})(?:s|es|ed|ing|er|ers)?\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Rule:
    categories: tuple[str, ...]  # OpenAI categories
    code: str | None  # Llama Guard 3 hazard, or None when it has no such hazard
    strong: re.Pattern[str]
    weak: re.Pattern[str] | None = None


_RULES = (
    _Rule(("violence",), "S1", _words("kill", "murder", "stab", "stabbing", "shoot"),
          _words("fight", "punch")),
    _Rule(("violence", "illicit/violent"), "S9", _words("bomb", "explosive", "nerve agent")),
    _Rule(("illicit",), "S2", _words("steal", "shoplift", "launder", "meth"), _words("hack")),
    _Rule(("harassment",), None, _words("idiot", "moron", "loser"), _words("stupid")),
    _Rule(("hate",), "S10", _words("subhuman", "inferior race")),
    _Rule(("self-harm", "self-harm/intent"), "S11",
          _words("suicide", "kill myself", "self-harm", "hurt myself")),
    _Rule(("sexual",), "S12", _words("porn", "explicit sex")),
)  # fmt: skip


def moderation_result(text: str) -> dict[str, Any]:
    """One OpenAI moderation result for ``text``."""
    scores = dict.fromkeys(CATEGORIES, _CLEAN_SCORE)
    for rule in _RULES:
        if rule.strong.search(text):
            score = _STRONG_SCORE
        elif rule.weak is not None and rule.weak.search(text):
            score = _WEAK_SCORE
        else:
            continue
        for category in rule.categories:
            scores[category] = max(scores[category], score)
    flags = {name: score >= _FLAG_LINE for name, score in scores.items()}
    return {
        "flagged": any(flags.values()),
        "categories": flags,
        "category_scores": scores,
        "category_applied_input_types": {name: ["text"] for name in CATEGORIES},
    }


def judge_reply(text: str) -> str:
    """What a Llama Guard judge answers about ``text``."""
    codes = {rule.code for rule in _RULES if rule.code is not None and rule.strong.search(text)}
    if not codes:
        return "safe"
    return "unsafe\n" + ",".join(sorted(codes, key=lambda code: int(code[1:])))


async def moderations(request: web.Request) -> web.Response:
    """``POST /v1/moderations``."""
    loop = asyncio.get_running_loop()
    arrived = loop.time()
    body = parse_json_object(await request.read())
    inputs = _inputs(body)
    default_ms = (BASE_S + sum(len(text) for text in inputs) * PER_CHAR_S) * 1000
    latency_s = header_float(request.headers, LATENCY_HEADER, default_ms, zero_ok=True) / 1000
    model = body.get("model")
    payload = {
        "id": "modr-" + uuid.uuid4().hex,
        "model": model if isinstance(model, str) and model else DEFAULT_MODEL,
        "results": [moderation_result(text) for text in inputs],
    }
    await asyncio.sleep(max(0.0, arrived + latency_s - loop.time()))
    return web.Response(body=orjson.dumps(payload), content_type="application/json")


def parse_chat_or_judge(body: dict[str, Any], model: str, default_max_tokens: int) -> GenerationJob:
    """A chat job, whose answer is a judge's verdict when the request is for a judge."""
    job = parse_chat(body, model, default_max_tokens)  # validates the messages
    texts = [content_text(m.get("content"), "messages") for m in body["messages"]]
    if "llama-guard" not in job.model.lower() and not any(_CATEGORIES_MARKER in t for t in texts):
        return job
    found = _CONVERSATION.search("\n".join(texts))
    tokens = tuple(split_tokens(judge_reply(found.group(1) if found else texts[-1])))
    finish = "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and len(tokens) > limit:
        # A real judge cut off by max_tokens says "unsafe" without its codes.
        tokens, finish = tokens[:limit], "length"
    return replace(job, choices=tuple(Choice(tokens, finish) for _ in job.choices))


def _inputs(body: dict[str, Any]) -> list[str]:
    raw = body.get("input")
    if raw is None:
        raise missing("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        return raw
    raise invalid("input", "a string or an array of strings")
