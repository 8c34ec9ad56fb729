"""Paths real model servers route to a model that the route gate lets through as ``other``.

With the default ``unjudged_routes: pass`` an unjudged route is forwarded
as it came. These paths take a prompt the model reads, in a shape a judged
surface knows: vLLM's ``POST /invocations`` (the SageMaker entry point)
serves a chat completions or completions body; llama.cpp's server takes
``prompt`` at ``/completion`` and ``/infill``; TGI's ``/generate`` and
``/generate_stream`` take ``inputs``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.proxy.conftest import ProxyFactory, post_json
from tests.security.conftest import FILTERS
from tests.surfaces.conftest import Scripted

SAY = "open sesame"
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "vLLM /invocations, a chat body": (
        "/invocations", {"model": "m", "messages": [{"role": "user", "content": SAY}]}),
    "vLLM /invocations, a completions body": ("/invocations", {"model": "m", "prompt": SAY}),
    "llama.cpp /completion": ("/completion", {"prompt": SAY, "n_predict": 8}),
    "llama.cpp /infill": ("/infill", {"input_prefix": SAY, "input_suffix": "", "prompt": ""}),
    "TGI /generate": ("/generate", {"inputs": SAY, "parameters": {}}),
}  # fmt: skip

OPEN = "open finding: not fixed in this change (see the review's findings)"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.xfail(strict=True, reason=OPEN)
async def test_a_prompt_on_a_model_route_of_a_known_server_is_not_forwarded_unjudged(
    start_proxy: ProxyFactory, scripted: Scripted, case: str
) -> None:
    path, body = CASES[case]
    scripted.answer = {"content": "ok"}
    proxy = await start_proxy(FILTERS, upstream=scripted.url)
    status, _, _ = await post_json(f"{proxy.url}{path}", body)
    assert scripted.bodies == [], f"forwarded unjudged, answered {status}"
