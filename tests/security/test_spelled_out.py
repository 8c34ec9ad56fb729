"""Answer fields that spell the judged text out again, in another form.

Logprobs list the answer's tokens as text. vLLM's ``return_token_ids``
adds each choice's (and each chunk's) ``token_ids``, which a client decodes
with the model's tokenizer; its ``enable_response_messages`` adds a
Response's ``output_messages`` (the answer as the model wrote it, its text
whole). When a filter changes or holds back the text, these go too.
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.loopback import ProxyFactory, post_json
from tests.security.conftest import EMAIL, FILTERS, data_events, streamed
from tests.surfaces.conftest import Scripted, sse

CHAT = "/v1/chat/completions"
PROMPT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
# Token ids no other number of these answers is: one found in the answer is one leaked.
EMAIL_TOKENS = [918273, 918274, 918275]


async def test_a_redacted_chat_answer_loses_its_token_ids(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    choice = {"index": 0, "message": {"role": "assistant", "content": f"mail {EMAIL}"},
              "finish_reason": "stop", "logprobs": None, "token_ids": EMAIL_TOKENS}  # fmt: skip
    scripted.answer = {"id": "c", "object": "chat.completion", "model": "m",
                       "prompt_token_ids": [1, 2], "choices": [choice]}  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", PROMPT)
    assert status == 200
    assert b"[EMAIL]" in answer
    assert b"918273" not in answer
    assert orjson.loads(answer)["prompt_token_ids"] == [1, 2]  # the prompt's own: kept


async def test_an_unchanged_chat_answer_keeps_its_token_ids(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    choice = {"index": 0, "message": {"role": "assistant", "content": "hello"},
              "finish_reason": "stop", "token_ids": EMAIL_TOKENS}  # fmt: skip
    scripted.answer = {"id": "c", "object": "chat.completion", "model": "m", "choices": [choice]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}{CHAT}", PROMPT)
    assert status == 200
    assert orjson.loads(answer)["choices"][0]["token_ids"] == EMAIL_TOKENS


async def test_a_redacted_completion_loses_its_token_ids(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    choice = {"index": 0, "text": f"mail {EMAIL}", "finish_reason": "stop",
              "logprobs": None, "token_ids": EMAIL_TOKENS}  # fmt: skip
    scripted.answer = {"id": "c", "object": "text_completion", "model": "m", "choices": [choice]}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(
        f"{proxy.url}/v1/completions", {"model": "m", "prompt": "x"}
    )
    assert status == 200
    assert b"[EMAIL]" in answer
    assert b"918273" not in answer


def chunk(delta: dict[str, Any], tokens: list[int], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "token_ids": tokens}
    return sse({"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]})


async def test_a_chunk_whose_text_is_held_back_loses_its_token_ids(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """The text is held while the email may be forming; its token ids went out at once."""
    scripted.script = [
        chunk({"role": "assistant", "content": "mail jane.doe"}, [5, *EMAIL_TOKENS[:1]]),
        chunk({"content": "@example"}, EMAIL_TOKENS[1:2]),
        chunk({"content": ".com"}, EMAIL_TOKENS[2:]),
        chunk({}, [], "stop"),
        b"data: [DONE]\n\n",
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}{CHAT}", {**PROMPT, "stream": True})
    assert b"[EMAIL]" in raw
    assert EMAIL.encode() not in raw
    for token in EMAIL_TOKENS:
        assert str(token).encode() not in raw


RESPONSE = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
            "status": "completed", "usage": None}  # fmt: skip
TEXT = {"type": "output_text", "text": f"mail {EMAIL}", "annotations": []}
MESSAGE = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
           "content": [TEXT]}  # fmt: skip
# vLLM's enable_response_messages: the answer as the model wrote it (gpt-oss's harmony).
WRITTEN = [{"author": {"role": "assistant"}, "channel": "final",
            "content": [{"type": "text", "text": f"mail {EMAIL}"}]}]  # fmt: skip


async def test_a_redacted_response_loses_its_output_messages(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    prompt = [{"author": {"role": "user"}, "content": "x"}]
    scripted.answer = {**RESPONSE, "output": [MESSAGE], "output_messages": WRITTEN,
                       "input_messages": prompt}  # fmt: skip
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}/v1/responses", {"model": "m", "input": "x"})
    assert status == 200
    assert b"[EMAIL]" in answer
    assert EMAIL.encode() not in answer


async def test_a_streamed_response_loses_its_output_messages_at_its_end(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    added = {**MESSAGE, "status": "in_progress", "content": []}
    text = f"mail {EMAIL}"
    where = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**RESPONSE, "status": "in_progress",
                                                  "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        {"type": "response.content_part.added", **where,
         "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", **where, "delta": text, "logprobs": []},
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.output_item.done", "output_index": 0, "item": MESSAGE},
        {"type": "response.completed", "response": {**RESPONSE, "output": [MESSAGE],
                                                    "output_messages": WRITTEN}},
    ]  # fmt: skip
    scripted.script = [
        sse({**event, "sequence_number": n}, event["type"]) for n, event in enumerate(events)
    ]
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    raw = await streamed(f"{proxy.url}/v1/responses", {"model": "m", "input": "x", "stream": True})
    assert data_events(raw)[-1]["type"] == "response.completed"
    assert b"[EMAIL]" in raw
    assert EMAIL.encode() not in raw


async def test_output_messages_are_judged_when_the_output_has_no_text(
    start_proxy: ProxyFactory, scripted: Scripted
) -> None:
    """Dropped only when the output's text changed, they went out whole beside an
    output the filters found nothing in."""
    scripted.answer = {**RESPONSE, "output": [], "output_messages": WRITTEN}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, answer = await post_json(f"{proxy.url}/v1/responses", {"model": "m", "input": "x"})
    assert status == 200
    assert EMAIL.encode() not in answer
    assert b"mail [EMAIL]" in answer
