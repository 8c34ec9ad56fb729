"""The chain runner over real sockets: containment, timeouts, modes, variants, plugins."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from filters.base import Edit, Verdict
from proxy.judge.segments import SEGMENT_SEPARATOR, place_edits
from tests.judge.sample_filters import SpinningPerMessage
from tests.loopback import ProxyFactory, RunningProxy, echoed_body, post_json

CHAT = {"model": "m", "messages": [{"role": "user", "content": "echo: hello"}]}
PLUGINS = "tests.judge.sample_filters"


def one_filter(type_: str, **fields: Any) -> dict[str, Any]:
    return {"filters": [{"name": "f", "type": type_, **fields}]}


def decisions(
    proxy: RunningProxy, action: str, stage: str = "input", mode: str = "enforce"
) -> float:
    return proxy.value(
        "taxmeter_filter_decisions_total", filter="f", stage=stage, mode=mode, action=action
    )


async def chat(proxy: RunningProxy, body: dict[str, Any] = CHAT) -> tuple[int, dict[str, Any]]:
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", body)
    return status, orjson.loads(raw)


@pytest.mark.parametrize(("on_error", "status"), [("open", 200), ("closed", 400)])
async def test_a_raising_filter_is_contained_and_counted(
    start_proxy: ProxyFactory, on_error: str, status: int
) -> None:
    proxy = await start_proxy(one_filter(f"{PLUGINS}:Raising", stages=["input"], on_error=on_error))
    got, payload = await chat(proxy)
    assert got == status
    if status == 400:
        assert payload["error"]["code"] == "content_filter"
    assert decisions(proxy, "error") == 1


async def test_a_wrong_return_value_counts_as_error(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(one_filter(f"{PLUGINS}:WrongReturn"))
    got, _ = await chat(proxy)
    assert got == 200
    assert decisions(proxy, "error") == 1


@pytest.mark.parametrize("plugin", ["OwnTimeout", "RedactsToNothingSaid"])
async def test_a_filter_s_own_timeout_or_a_redaction_without_text_is_an_error(
    start_proxy: ProxyFactory, echo_server: TestServer, plugin: str
) -> None:
    proxy = await start_proxy(
        one_filter(f"{PLUGINS}:{plugin}"), upstream=str(echo_server.make_url(""))
    )
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", CHAT)
    assert status == 200  # on_error: open
    forwarded = orjson.loads(echoed_body(orjson.loads(raw)))
    assert forwarded["messages"] == CHAT["messages"]  # as sent: nothing erased
    assert (decisions(proxy, "error"), decisions(proxy, "timeout")) == (1, 0)


@pytest.mark.parametrize(("on_error", "status"), [("open", 200), ("closed", 400)])
async def test_a_hanging_filter_times_out_at_its_timeout(
    start_proxy: ProxyFactory, on_error: str, status: int
) -> None:
    proxy = await start_proxy(one_filter(f"{PLUGINS}:Hanging", timeout_ms=50, on_error=on_error))
    got, _ = await chat(proxy)
    assert got == status
    assert decisions(proxy, "timeout") == 1
    spent = proxy.value(
        "taxmeter_filter_duration_seconds_sum", filter="f", stage="input", variant="default"
    )
    assert 0.045 < spent < 0.1


async def test_off_filters_do_not_run(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(one_filter(f"{PLUGINS}:Raising", mode="off"))
    got, _ = await chat(proxy)
    assert got == 200
    assert decisions(proxy, "error") == 0
    assert decisions(proxy, "error", mode="off") == 0


async def test_redaction_in_observe_mode_changes_nothing(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(
        one_filter(f"{PLUGINS}:Shouting", stages=["input"], mode="observe"),
        upstream=str(echo_server.make_url("")),
    )
    raw = orjson.dumps(CHAT)
    status, _, body = await post_json(f"{proxy.url}/v1/chat/completions", raw)
    assert status == 200
    assert echoed_body(orjson.loads(body)) == raw
    await proxy.settle()
    assert decisions(proxy, "redact", mode="observe") == 1


async def test_redactions_chain_in_config_order(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(
        {"filters": [
            {"name": "a", "type": f"{PLUGINS}:Shouting", "params": {"suffix": "!"}},
            {"name": "b", "type": f"{PLUGINS}:Shouting", "params": {"suffix": "?"}},
        ]}
    )  # fmt: skip
    got, payload = await chat(proxy)
    assert got == 200
    # Input: "echo: hello" -> "ECHO: HELLO!" -> "ECHO: HELLO!?"; the mock only echoes a
    # lower-case "echo:", so the completion is pseudo-text, shouted twice on the way out.
    content = payload["choices"][0]["message"]["content"]
    assert content.endswith("!?")
    assert content[:-2] == content[:-2].upper()


async def test_per_message_redaction_keeps_each_message_in_place(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(
        one_filter(f"{PLUGINS}:Shouting", stages=["input"]), upstream=str(echo_server.make_url(""))
    )
    body = {"model": "m", "messages": [{"role": "system", "content": "a\n\n"},
                                       {"role": "user", "content": "\nb"}]}  # fmt: skip
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 200
    forwarded = orjson.loads(echoed_body(orjson.loads(raw)))
    assert [m["content"] for m in forwarded["messages"]] == ["A\n\n", "\nB"]


async def test_a_message_redacted_to_nothing_is_forwarded_empty(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    proxy = await start_proxy(
        one_filter(f"{PLUGINS}:PerMessage"), upstream=str(echo_server.make_url(""))
    )
    body = {"model": "m", "messages": [{"role": "system", "content": "erase this"},
                                       {"role": "user", "content": "hi"}]}  # fmt: skip
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 200
    forwarded = orjson.loads(echoed_body(orjson.loads(raw)))
    assert [m["content"] for m in forwarded["messages"]] == ["", "hi"]
    # One message: redacted whole, at the first ask.
    body["messages"] = body["messages"][:1]
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 200
    forwarded = orjson.loads(echoed_body(orjson.loads(raw)))
    assert [m["content"] for m in forwarded["messages"]] == [""]


async def test_a_message_blocked_when_asked_again_blocks_the_request(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(one_filter(f"{PLUGINS}:PerMessage"))
    body = {"model": "m", "messages": [{"role": "user", "content": "forbidden"},
                                       {"role": "user", "content": "echo: hi"}]}  # fmt: skip
    got, payload = await chat(proxy, body)
    assert got == 400
    assert payload["error"]["code"] == "content_filter"
    assert "a forbidden message" in payload["error"]["message"]
    assert (decisions(proxy, "block"), decisions(proxy, "error")) == (1, 0)


async def test_a_redaction_without_edits_that_spans_two_messages_is_a_block(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(one_filter(f"{PLUGINS}:AcrossMessages"))
    body = {"model": "m", "messages": [{"role": "user", "content": "echo: a"},
                                       {"role": "user", "content": "b"}]}  # fmt: skip
    got, payload = await chat(proxy, body)
    assert got == 400
    assert payload["error"]["code"] == "content_filter"
    assert "spans two messages" in payload["error"]["message"]
    assert (decisions(proxy, "block"), decisions(proxy, "error")) == (1, 0)


async def test_edits_that_do_not_give_the_redacted_text_are_an_error(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(one_filter(f"{PLUGINS}:WrongEdits", on_error="closed"))
    body = {"model": "m", "messages": [{"role": "user", "content": "echo: a"},
                                       {"role": "user", "content": "b"}]}  # fmt: skip
    got, _ = await chat(proxy, body)
    assert got == 400
    assert decisions(proxy, "error") == 1


def edit(start: int, end: int, text: str = "#") -> Edit:
    return Edit(start, end, text)


@pytest.mark.parametrize(
    ("segments", "edits", "placed"),
    [
        (["abc", "def"], [edit(1, 2)], ["a#c", "def"]),
        (["abc", "def"], [edit(5, 6)], ["abc", "#ef"]),
        (["abc", "def"], [edit(2, 6)], ["ab#", "#ef"]),  # over the separator: each part
        (["ab", "", "cd"], [edit(1, 7)], ["a#", "", "#d"]),  # an empty message stays empty
        (["ab", "cd", "ef"], [edit(0, 10)], ["#", "#", "#"]),
        (["ab", "cd"], [edit(2, 4)], ["ab", "cd"]),  # only the separator: nothing to replace
        (["ab", "cd"], [edit(2, 2, "!"), edit(4, 4, "?")], ["ab!", "?cd"]),  # insertions
        (["ab", "cd"], [edit(3, 3, "!")], ["ab", "cd"]),  # an insertion inside the separator
        (["ab", "cd"], [edit(0, 1), edit(1, 2, ""), edit(5, 6)], ["#", "c#"]),
    ],
)
def test_edits_land_in_the_messages_they_came_from(
    segments: list[str], edits: list[Edit], placed: list[str]
) -> None:
    joined = SEGMENT_SEPARATOR.join(segments)
    verdict = Verdict.redact_spans(joined, edits, "r")
    assert place_edits(joined, segments, verdict) == placed


@pytest.mark.parametrize(
    "edits",
    [[edit(3, 1)], [edit(0, 3), edit(2, 4)], [edit(0, 99)]],
    ids=["backwards", "overlapping", "beyond the text"],
)
def test_edits_out_of_order_or_out_of_the_text_are_refused(edits: list[Edit]) -> None:
    verdict = Verdict("redact", "r", "x", edits=tuple(edits))
    with pytest.raises(ValueError, match="out of order or out of the text"):
        place_edits("ab\n\ncd", ["ab", "cd"], verdict)


async def test_variants_disable_filters_and_override_modes(start_proxy: ProxyFactory) -> None:
    config = {
        "filters": [{"name": "f", "type": "denylist", "params": {"words": ["hello"]}}],
        "variants": {"strict": {"weight": 1}, "lenient": {"weight": 0, "disable": ["f"]}},
    }
    proxy = await start_proxy(config)
    got, _ = await chat(proxy)
    assert got == 400
    assert proxy.value("taxmeter_requests_total", route="chat_completions", variant="strict",
                       outcome="blocked") == 1  # fmt: skip

    config["variants"] = {"lenient": {"weight": 1, "modes": {"f": "observe"}}}
    proxy = await start_proxy(config)
    got, _ = await chat(proxy)
    assert got == 200
    await proxy.settle()
    assert decisions(proxy, "block", mode="observe") == 1


async def test_entry_point_plugins_are_found(
    start_proxy: ProxyFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "acme_guard-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-guard\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[taxmeter.filters]\nacme_shout = {PLUGINS}:Shouting\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    proxy = await start_proxy(one_filter("acme_shout", stages=["input"]))
    got, _payload = await chat(proxy)
    assert got == 200
    assert decisions(proxy, "redact") == 1


async def test_a_cpu_bound_filter_judges_the_text_on_a_thread_and_each_ask_s_cpu_counts(
    start_proxy: ProxyFactory, echo_server: TestServer
) -> None:
    SpinningPerMessage.threads.clear()
    proxy = await start_proxy(
        one_filter(f"{PLUGINS}:SpinningPerMessage"), upstream=str(echo_server.make_url(""))
    )
    body = {"model": "m", "messages": [{"role": "user", "content": "my secret"},
                                       {"role": "user", "content": "hi"}]}  # fmt: skip
    status, _, raw = await post_json(f"{proxy.url}/v1/chat/completions", body)
    assert status == 200
    forwarded = orjson.loads(echoed_body(orjson.loads(raw)))
    assert [m["content"] for m in forwarded["messages"]] == ["my [S]", "hi"]
    # Asked three times (the prompt, then each message), each 5 ms of CPU: all counted.
    assert len(SpinningPerMessage.threads) == 3
    assert "MainThread" not in SpinningPerMessage.threads
    cpu = proxy.value("taxmeter_filter_cpu_seconds_sum", filter="f", stage="input",
                      variant="default")  # fmt: skip
    assert cpu >= 0.015
    got, payload = await chat(proxy, {"model": "m", "messages": [
        {"role": "user", "content": "forbidden"}]})  # fmt: skip
    assert got == 400
    assert payload["error"]["code"] == "content_filter"


async def test_a_cpu_bound_filter_runs_off_the_event_loop(start_proxy: ProxyFactory) -> None:
    for cpu_bound, loop_blocked in ((False, True), (True, False)):
        hog = {"name": "hog", "type": "synthetic", "stages": ["input"], "timeout_ms": 5000,
               "params": {"cpu_ms": 300, "cpu_bound": cpu_bound}}  # fmt: skip
        proxy = await start_proxy({"filters": [hog]})
        assert (await chat(proxy))[0] == 200
        await asyncio.sleep(0.15)
        wakeups = proxy.value("taxmeter_event_loop_lag_seconds_count")
        late = wakeups - proxy.value("taxmeter_event_loop_lag_seconds_bucket", le="0.1")
        # On the loop the hog stalls it for 300 ms; on a thread the loop keeps running.
        assert (late >= 1) is loop_blocked, (cpu_bound, late)
