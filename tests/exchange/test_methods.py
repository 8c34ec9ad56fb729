"""A method a surface's path does not accept: 405 with ``Allow``, in the API's shape, unforwarded.

Before, ``GET /v1/chat/completions`` went to the model server unjudged (the
simulated one answered "the request body is not valid JSON"), and a body sent
with PUT or GET went up with its method changed from the one clients use.
"""

from __future__ import annotations

import orjson
import pytest

from proxy.surfaces import surface_for
from tests.exchange.test_routes import BLOCKED, FILTERS, PROMPTS, Recorder, raw_request, recorder
from tests.loopback import ProxyFactory

__all__ = ["recorder"]

PATHS = [
    ("chat_completions", "/v1/chat/completions"),
    ("chat_completions", "/openai/deployments/d/chat/completions"),
    ("completions", "/v1/completions"),
    ("embeddings", "/v1/embeddings"),
    ("responses", "/v1/responses"),
    ("responses", "/v1/responses/input_tokens"),
    ("messages", "/v1/messages"),
    ("messages", "/v1/messages/count_tokens"),
]


def assert_refused(label: str, answer: bytes) -> None:
    error = orjson.loads(answer)
    if label == "messages":  # Anthropic's shape, so its SDK raises its own error
        assert error["type"] == "error"
        assert error["error"]["message"].startswith("method_not_allowed: ")
    else:
        assert error["error"]["code"] == "method_not_allowed"
        assert error["error"]["type"] == "invalid_request_error"
    assert "POST" in orjson.dumps(error).decode()


@pytest.mark.parametrize(("label", "target"), PATHS)
async def test_other_methods_get_405_with_allow_and_are_never_forwarded(
    start_proxy: ProxyFactory, recorder: Recorder, label: str, target: str
) -> None:
    if surface_for(label) is None:
        pytest.skip(f"no {label} surface in this build")
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    for method, body in (
        ("GET", None), ("DELETE", None), ("PUT", PROMPTS[label]),
        ("GET", PROMPTS[label]), ("PATCH", PROMPTS[label]), ("OPTIONS", PROMPTS[label]),
    ):  # fmt: skip
        status, headers, answer = await raw_request(proxy.url, method, target, body)
        assert (status, headers.get("allow")) == (405, "POST"), (method, body)
        assert headers["content-type"].startswith("application/json")
        assert_refused(label, answer)
    status, headers, answer = await raw_request(proxy.url, "HEAD", target)
    assert (status, headers.get("allow"), answer) == (405, "POST", b"")
    assert recorder.seen == []  # not one reached the model server, the prompts least of all
    counted = {"route": label, "variant": "default", "outcome": "client_error"}
    assert proxy.value("taxmeter_requests_total", **counted) == 7


async def test_a_preflight_and_the_reads_of_stored_answers_pass(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    for method, target in (
        ("OPTIONS", "/v1/chat/completions"),  # a CORS preflight: no body
        ("GET", "/v1/chat/completions/chatcmpl-1"),  # a stored answer, judged as output
        ("DELETE", "/v1/chat/completions/chatcmpl-1"),
    ):
        status, headers, _ = await raw_request(proxy.url, method, target)
        assert status == 200, (method, target)
        assert "allow" not in headers
    assert [(m, t) for m, t, _ in recorder.seen] == [
        ("OPTIONS", "/v1/chat/completions"),
        ("GET", "/v1/chat/completions/chatcmpl-1"),
        ("DELETE", "/v1/chat/completions/chatcmpl-1"),
    ]
    prompt = PROMPTS["chat_completions"]
    status, _, _ = await raw_request(proxy.url, "POST", "/v1/chat/completions", prompt)
    assert status == 400  # and a POST is judged as ever


async def test_pass_all_forwards_a_bodyless_list_but_never_a_body(
    start_proxy: ProxyFactory, recorder: Recorder
) -> None:
    proxy = await start_proxy({**FILTERS, "unjudged_routes": "pass_all"}, upstream=recorder.url)
    status, _, _ = await raw_request(proxy.url, "GET", "/v1/chat/completions?limit=2")
    assert status == 200  # OpenAI's list of stored completions, unjudged as asked
    assert proxy.value("taxmeter_requests_total", route="other", variant="default", outcome="ok")
    status, headers, _ = await raw_request(
        proxy.url, "PUT", "/v1/chat/completions", PROMPTS["chat_completions"]
    )
    assert (status, headers.get("allow")) == (405, "POST")
    assert [(m, t) for m, t, _ in recorder.seen] == [("GET", "/v1/chat/completions?limit=2")]
    assert all(BLOCKED.encode() not in sent for _, _, sent in recorder.seen)


OVERRIDES = [
    # A stored answer read by an upstream that takes the method from the request,
    # while taxmeter sees a POST (OpenAI's update of a stored completion) or a DELETE.
    ("POST", "/v1/chat/completions/chatcmpl-1", {"X-HTTP-Method-Override": "GET"}),
    ("DELETE", "/v1/chat/completions/chatcmpl-1", {"X-HTTP-Method": "GET"}),
    ("POST", "/v1/chat/completions/chatcmpl-1?_method=GET", {}),
    ("POST", "/v1/chat/completions/chatcmpl-1?a=1&%5Fmethod=GET", {}),
    # A preflight (forwarded unjudged) that an upstream would take as a create.
    ("OPTIONS", "/v1/chat/completions", {"X-Method-Override": "POST"}),
    ("POST", "/v1/chat/completions", {"x-http-method-override": "PUT"}),
    ("GET", "/v1/models", {"X-HTTP-Method-Override": "POST"}),
]


@pytest.mark.parametrize(("method", "target", "headers"), OVERRIDES)
@pytest.mark.parametrize("unjudged", ["pass", "pass_all"])
async def test_a_method_override_is_refused_and_never_forwarded(
    start_proxy: ProxyFactory,
    recorder: Recorder,
    method: str,
    target: str,
    headers: dict[str, str],
    unjudged: str,
) -> None:
    proxy = await start_proxy({**FILTERS, "unjudged_routes": unjudged}, upstream=recorder.url)
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    status, _, answer = await raw_request(proxy.url, method, target, None, extra)
    assert status == 400, (method, target, headers)
    error = orjson.loads(answer)["error"]
    assert error["code"] == "method_override"
    assert recorder.seen == []  # the model server never heard of it
    # Without the override the same request goes on (a preflight, a stored answer's read).
    status, _, _ = await raw_request(proxy.url, "OPTIONS", "/v1/chat/completions")
    assert status == 200
    assert [m for m, _, _ in recorder.seen] == ["OPTIONS"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "PROPFIND"])
async def test_a_stored_answer_path_refuses_the_methods_its_api_does_not_define(
    start_proxy: ProxyFactory, recorder: Recorder, method: str
) -> None:
    # Forwarded as route "other", their answer (a stored answer, from a server that
    # reads them as an update) would have reached the client unjudged.
    proxy = await start_proxy(FILTERS, upstream=recorder.url)
    target = "/v1/chat/completions/chatcmpl-1"
    status, headers, answer = await raw_request(proxy.url, method, target, {"metadata": {}})
    assert (status, headers.get("allow")) == (405, "GET, HEAD, POST, DELETE")
    assert orjson.loads(answer)["error"]["code"] == "method_not_allowed"
    assert recorder.seen == []
