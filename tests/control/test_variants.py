"""Variant assignment: by weight, sticky by key, overridable if allowed, never a new label."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.config.schema import ConfigError, parse_config
from proxy.control.variants import Assigner
from tests.loopback import ProxyFactory, RunningProxy

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
TWO = {"a": {"weight": 50}, "b": {"weight": 50}}


async def variants_of(
    proxy: RunningProxy, n: int, headers: list[dict[str, str]] | None = None
) -> list[str]:
    """Send n requests and read which variant served each (X-Taxmeter-Variant)."""
    seen = []
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            extra = headers[i % len(headers)] if headers else {}
            async with session.post(
                f"{proxy.url}/v1/chat/completions", data=orjson.dumps(CHAT),
                headers={"Content-Type": "application/json", **extra},
            ) as response:  # fmt: skip
                assert response.status == 200
                seen.append(response.headers.get("X-Taxmeter-Variant", ""))
    return seen


SALT = {"TAXMETER_TEST_SALT": "a secret salt"}
ADMIN_TOKEN = "admin-secret"
ADMIN = {"admin": {"listen": "127.0.0.1:0", "token_env": "TAXMETER_TEST_ADMIN"}}


def config(**assignment: Any) -> dict[str, Any]:
    if "sticky" in assignment:
        assignment.setdefault("salt_env", "TAXMETER_TEST_SALT")
    return {"variants": TWO, "assignment": {"expose": True, **assignment}}


async def test_random_assignment_follows_the_weights(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(config())
    counts = Counter(await variants_of(proxy, 200))
    assert set(counts) == {"a", "b"}
    assert 70 <= counts["a"] <= 130
    for name in ("a", "b"):
        assert proxy.value("taxmeter_variant_assignments_total", variant=name) == counts[name]
        assert proxy.value("taxmeter_requests_total", route="chat_completions", variant=name,
                           outcome="ok") == counts[name]  # fmt: skip


async def test_zero_weight_variant_gets_nothing(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(
        {"variants": {"a": {"weight": 1}, "b": {"weight": 0}}, "assignment": {"expose": True}}
    )
    assert set(await variants_of(proxy, 30)) == {"a"}
    # Its series exist from the start, at 0.
    assert (
        proxy.registry.get_sample_value("taxmeter_variant_assignments_total", {"variant": "b"})
        == 0.0
    )


async def test_sticky_by_header_keeps_a_key_in_one_variant(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(config(sticky="header:x-user-id"), environ=SALT)
    users = [{"x-user-id": f"user-{i}"} for i in range(40)]
    first = await variants_of(proxy, 40, users)
    again = await variants_of(proxy, 40, users)
    assert first == again
    assert set(first) == {"a", "b"}  # the keys spread over both
    # Without the header, requests are assigned at random: both variants appear.
    assert set(await variants_of(proxy, 60)) == {"a", "b"}


async def raw_variant(proxy: RunningProxy, header: bytes) -> tuple[int, str]:
    """One request with a header line of raw bytes: (status, the variant that served it)."""
    body = orjson.dumps(CHAT)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n\r\n")  # fmt: skip
    reader, writer = await asyncio.open_connection(proxy.server.host, proxy.server.port)
    writer.write(head % (len(body), header) + body)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    variant = re.search(rb"\r\nX-Taxmeter-Variant: (\w+)\r\n", rest)
    return int(status_line.split()[1]), variant.group(1).decode() if variant else ""


async def test_a_sticky_key_that_is_not_utf_8_is_hashed_as_its_bytes(
    start_proxy: ProxyFactory,
) -> None:
    # HTTP allows any octet in a field value; the key is the client's bytes, so
    # a key of Latin-1 (or random) bytes is as sticky as any and never a 500.
    proxy = await start_proxy(config(sticky="header:x-user-id"), environ=SALT)
    keys = [b"x-user-id: caf\xe9-%d" % i for i in range(20)]
    first = [await raw_variant(proxy, key) for key in keys]
    assert {status for status, _ in first} == {200}
    assert [await raw_variant(proxy, key) for key in keys] == first
    assert {variant for _, variant in first} == {"a", "b"}


async def test_an_admin_token_that_is_not_utf_8_is_refused_not_a_500(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(
        {**config(allow_override=True), **ADMIN}, environ={"TAXMETER_TEST_ADMIN": ADMIN_TOKEN}
    )
    chosen = [
        await raw_variant(proxy, b"X-Taxmeter-Variant: b\r\nX-Taxmeter-Admin-Token: \xff%d" % i)
        for i in range(30)
    ]
    assert {status for status, _ in chosen} == {200}
    assert {variant for _, variant in chosen} == {"a", "b"}  # not forced


async def test_without_an_admin_token_in_the_environment_no_guess_chooses_the_arm(
    start_proxy: ProxyFactory,
) -> None:
    # The override is allowed by the config, but the token's variable is unset:
    # there is no token, so no value of the header (a default's, an empty one) is it.
    proxy = await start_proxy({**config(allow_override=True), **ADMIN}, environ={})
    for guess in ("", "XXXX", "None", ADMIN_TOKEN):
        headers = [{"X-Taxmeter-Variant": "b", "X-Taxmeter-Admin-Token": guess}]
        assert set(await variants_of(proxy, 30, headers)) == {"a", "b"}, guess


async def test_sticky_by_client_address(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(config(sticky="client_address"), environ=SALT)
    assert len(set(await variants_of(proxy, 30))) == 1  # every request comes from 127.0.0.1


async def test_override_header_only_when_allowed_and_only_known_names(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy(config())
    forced = await variants_of(proxy, 40, [{"X-Taxmeter-Variant": "a"}])
    assert set(forced) == {"a", "b"}  # not allowed: ignored

    proxy = await start_proxy(
        {**config(allow_override=True), **ADMIN}, environ={"TAXMETER_TEST_ADMIN": ADMIN_TOKEN}
    )
    admin = {"X-Taxmeter-Admin-Token": ADMIN_TOKEN}
    assert set(await variants_of(proxy, 20, [{"X-Taxmeter-Variant": "b", **admin}])) == {"b"}
    # Without the admin token (or with a wrong one) a client cannot choose its arm.
    for token in ({}, {"X-Taxmeter-Admin-Token": "guess"}):
        chosen = await variants_of(proxy, 40, [{"X-Taxmeter-Variant": "b", **token}])
        assert set(chosen) == {"a", "b"}
    # An unknown name never becomes a label value: it is assigned as usual.
    attempted = await variants_of(proxy, 40, [{"X-Taxmeter-Variant": "evil name;x=1", **admin},
                                              {"X-Taxmeter-Variant": "c", **admin}])  # fmt: skip
    assert set(attempted) <= {"a", "b"}
    for family in proxy.registry.collect():
        for sample in family.samples:
            assert sample.labels.get("variant", "a") in {"a", "b"}, sample


async def test_variant_header_only_when_exposed(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"variants": TWO})
    assert set(await variants_of(proxy, 5)) == {""}


async def test_stats_document_has_each_variant(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"filters": [{"name": "pii", "type": "pii"}], **config()})
    served = Counter(await variants_of(proxy, 20))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.metrics_url}/stats") as response,
    ):
        stats = await response.json()
    assert stats["taxmeter_stats"] == 1
    for name in ("a", "b"):
        variant = stats["variants"][name]
        assert variant["weight"] == 50.0
        assert variant["requests"] == served[name]
        samples = variant["samples"]
        assert len(samples["latency_tax_seconds"]) == served[name]
        assert set(samples["route"]) <= {"chat_completions"}
        assert all(t is None for t in samples["ttft_seconds"])
    assert stats["filters"]["pii"]["requests"] == 20
    assert stats["filters"]["pii"]["decisions"]["allow"] == 40  # input and output


async def test_the_reservoir_is_bounded(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy({"stats_reservoir_size": 5})
    await variants_of(proxy, 12)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.metrics_url}/stats") as response,
    ):
        variant = (await response.json())["variants"]["default"]
    assert variant["requests"] == 12
    assert len(variant["samples"]["request_duration_seconds"]) == 5


def test_a_sticky_key_without_a_salt_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^assignment\.salt_env: .*allow_unsalted"):
        parse_config({"assignment": {"sticky": "header:x-user-id"}})
    unsalted = parse_config({"assignment": {"sticky": "client_address", "allow_unsalted": True}})
    assert unsalted.assignment.salt_env is None


async def test_a_salt_variable_that_holds_nothing_is_refused(start_proxy: ProxyFactory) -> None:
    with pytest.raises(ConfigError, match=r"^assignment\.salt_env: TAXMETER_TEST_SALT holds"):
        await start_proxy(config(sticky="header:x-user-id"), environ={})


def test_the_sticky_arm_depends_on_the_secret_salt() -> None:
    """Without the salt a client cannot compute which key lands in which arm."""
    base = parse_config(config(sticky="header:x-user-id"))
    keys = [f"user-{i}" for i in range(200)]
    one = Assigner(base, {"TAXMETER_TEST_SALT": "first secret"})
    two = Assigner(base, {"TAXMETER_TEST_SALT": "second secret"})
    again = Assigner(base, {"TAXMETER_TEST_SALT": "first secret"})
    arms = [one.pick(one.point_of(k)) for k in keys]
    assert arms == [again.pick(again.point_of(k)) for k in keys]
    differ = sum(a != two.pick(two.point_of(k)) for a, k in zip(arms, keys, strict=True))
    assert 60 <= differ <= 140  # about half move: the salt, not the key, decides
    unsalted = hashlib.blake2b(b"user-0", digest_size=8).digest()
    assert one.point_of("user-0") != int.from_bytes(unsalted, "big") / float(1 << 64)


def test_without_an_admin_token_the_override_is_never_honoured() -> None:
    allowed = parse_config(config(allow_override=True))  # no admin section
    assigner = Assigner(allowed, {})
    assert not assigner._allow_override
