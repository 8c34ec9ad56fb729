"""The gauges of what is running: filter budgets, the config's sha256, the version."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from proxy.measure.config_gauges import build_version
from tests.loopback import ProxyFactory, RunningProxy

AUTH = {"Authorization": "Bearer t"}
FIRST: dict[str, Any] = {
    "admin": {"token_env": "ADMIN_TOKEN"},
    "filters": [
        {"name": "pii", "type": "pii", "budget_ms": 10},
        {"name": "deny", "type": "denylist", "params": {"words": ["x"]}, "budget_ms": 2.5},
        {"name": "nobudget", "type": "pii"},
    ],
}


async def series(proxy: RunningProxy, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name`` on the metrics listener, by its labels."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{proxy.metrics_url}/metrics") as response,
    ):
        text = await response.text()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def reload(proxy: RunningProxy) -> int:
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(f"{proxy.admin_url}/admin/reload") as response,
    ):
        return response.status


async def test_budgets_and_the_config_hash_follow_every_reload(
    start_proxy: ProxyFactory, tmp_path: Path
) -> None:
    path = tmp_path / "taxmeter.yaml"
    path.write_text(yaml.safe_dump(FIRST))
    proxy = await start_proxy(FIRST, config_path=str(path), environ={"ADMIN_TOKEN": "t"})
    assert await series(proxy, "taxmeter_filter_budget_seconds") == {
        (("filter", "pii"),): 0.010,
        (("filter", "deny"),): 0.0025,
    }
    # Built from a mapping in code, not loaded from bytes: "none" until a reload.
    assert await series(proxy, "taxmeter_config_info") == {(("config_sha256", "none"),): 1.0}
    assert await series(proxy, "taxmeter_build_info") == {(("version", build_version()),): 1.0}
    assert build_version() != "unknown"

    assert await reload(proxy) == 200
    assert await series(proxy, "taxmeter_config_info") == {(("config_sha256", sha256(path)),): 1}

    # A budget changed, one dropped, a filter gone, a budget added: the series follow.
    second = {**FIRST, "filters": [
        {"name": "pii", "type": "pii", "budget_ms": 40},
        {"name": "nobudget", "type": "pii", "budget_ms": 1000},
        {"name": "deny2", "type": "denylist", "params": {"words": ["x"]}},
    ]}  # fmt: skip
    first_sha = sha256(path)
    path.write_text(yaml.safe_dump(second))
    assert await reload(proxy) == 200
    assert await series(proxy, "taxmeter_filter_budget_seconds") == {
        (("filter", "pii"),): 0.040,
        (("filter", "nobudget"),): 1.0,
    }
    assert await series(proxy, "taxmeter_config_info") == {(("config_sha256", sha256(path)),): 1}
    assert sha256(path) != first_sha

    # A refused file changes nothing.
    good_sha = sha256(path)
    path.write_text("filters: [")
    assert await reload(proxy) == 400
    assert await series(proxy, "taxmeter_config_info") == {(("config_sha256", good_sha),): 1}

    # SIGHUP's reload (no admin API involved) updates them too.
    path.write_text(yaml.safe_dump({**second, "filters": second["filters"][:1]}) + "# v3\n")
    proxy.apps.runtime.reload_or_keep()
    wanted = {(("config_sha256", sha256(path)),): 1.0}
    async with asyncio.timeout(10):
        # A task of the runtime's own, with no event to wait on: poll the scrape.
        while await series(proxy, "taxmeter_config_info") != wanted:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert await series(proxy, "taxmeter_filter_budget_seconds") == {(("filter", "pii"),): 0.04}
