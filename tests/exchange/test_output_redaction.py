"""An output-only redaction is written back into the answer the client gets.

The model here never echoes the prompt: its answer holds personal data of its
own, so only the output stage can have redacted what the client reads.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.loopback import ProxyFactory, ServerFactory, post_json

ANSWER_TEXT = "Write to jane.doe@example.com or call 555-123-4567, she knows."
REDACTED_TEXT = "Write to [EMAIL] or call [PHONE], she knows."
OUTPUT_PII = {"filters": [{"name": "pii", "type": "pii", "stages": ["output"]}]}

# Per route: the request, the fixed answer the model gives, and where its text is.
ROUTES: dict[str, tuple[dict[str, Any], dict[str, Any], tuple[Any, ...]]] = {
    "/v1/chat/completions": (
        {"model": "m", "messages": [{"role": "user", "content": "who do I ask?"}]},
        {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
         "choices": [{"index": 0, "finish_reason": "stop",
                      "message": {"role": "assistant", "content": ANSWER_TEXT}}]},
        ("choices", 0, "message", "content"),
    ),
    "/v1/completions": (
        {"model": "m", "prompt": "who do I ask?"},
        {"id": "c2", "object": "text_completion", "created": 1, "model": "m",
         "choices": [{"index": 0, "finish_reason": "stop", "text": ANSWER_TEXT}]},
        ("choices", 0, "text"),
    ),
}  # fmt: skip


def at(document: Any, where: tuple[Any, ...]) -> Any:
    for key in where:
        document = document[key]
    return document


@pytest.mark.parametrize("path", ROUTES)
async def test_an_output_only_redaction_reaches_the_client_exactly(
    start_proxy: ProxyFactory, aiohttp_server: ServerFactory, path: str
) -> None:
    request, answer, where = ROUTES[path]
    prompts: list[bytes] = []

    async def fixed(got: web.Request) -> web.Response:
        prompts.append(await got.read())
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post(path, fixed)
    upstream = await aiohttp_server(app)
    proxy = await start_proxy(OUTPUT_PII, upstream=str(upstream.make_url("")).rstrip("/"))
    status, _, body = await post_json(f"{proxy.url}{path}", request)
    assert status == 200, body
    assert at(orjson.loads(body), where) == REDACTED_TEXT
    assert b"jane.doe" not in body
    assert b"555-123-4567" not in body
    # The prompt went as sent (no input stage), and held nothing to redact.
    (sent,) = prompts
    assert orjson.loads(sent) == request
    labels = {"filter": "pii", "stage": "output", "mode": "enforce", "action": "redact"}
    await proxy.settle()
    assert proxy.value("taxmeter_filter_decisions_total", **labels) == 1
