"""deploy/compose: the stack's files fit together, and its load script drives a real proxy.

No Docker engine (nor the compose plugin) runs where the tests run, so the
stack is checked by reading it: every service is there, every mounted file
exists, the names and ports that services use to reach each other agree.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import COMPOSE, DASHBOARD, PROMETHEUS, ROOT
from tests.loopback import ProxyFactory

SERVICES = {"model", "taxmeter", "load", "prometheus", "tempo", "grafana"}


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    return document


def _provisioned(name: str) -> dict[str, Any]:
    path = COMPOSE / "grafana" / "provisioning" / name
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def test_every_service_is_there() -> None:
    assert set(_compose()["services"]) == SERVICES


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_mounts_and_build_contexts_exist(service: str) -> None:
    spec = _compose()["services"][service]
    for volume in spec.get("volumes", []):
        source = volume.split(":")[0]
        assert (COMPOSE / source).exists(), f"{service}: {source}"
    if "build" in spec:
        assert (COMPOSE / spec["build"]["context"] / spec["build"]["dockerfile"]).resolve() == (
            ROOT / "Dockerfile"
        )
    for dependency in spec.get("depends_on", []):
        assert dependency in SERVICES


def test_taxmeter_config_passes_check_config() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", str(COMPOSE / "taxmeter.yaml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_services_reach_each_other_by_name_and_port() -> None:
    services = _compose()["services"]
    env = services["taxmeter"]["environment"]
    model_listen = services["model"]["entrypoint"]
    assert env["TAXMETER_UPSTREAM"].endswith(model_listen[model_listen.index("--listen") + 1][7:])
    scrape = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (target,) = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert target == "taxmeter:9464"
    assert "9464:9464" in " ".join(services["taxmeter"]["ports"])
    load_argv = services["load"]["entrypoint"]
    assert load_argv[load_argv.index("--url") + 1] == "http://taxmeter:8080"
    tempo = yaml.safe_load((COMPOSE / "tempo.yaml").read_text())
    otlp = tempo["distributor"]["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(otlp.split(":")[1])
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]


def test_grafana_datasources_match_the_dashboard() -> None:
    sources = {s["uid"]: s for s in _provisioned("datasources/datasources.yml")["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())
    (datasource_variable,) = [
        v for v in dashboard["templating"]["list"] if v["type"] == "datasource"
    ]
    assert sources[datasource_variable["current"]["value"]]["type"] == "prometheus"
    (exemplar_link,) = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplar_link["name"] == "trace_id"  # the exemplar label taxmeter writes
    assert sources[exemplar_link["datasourceUid"]]["type"] == "tempo"
    (provider,) = _provisioned("dashboards/dashboards.yml")["providers"]
    mounts = [v.split(":") for v in _compose()["services"]["grafana"]["volumes"]]
    assert any(
        (COMPOSE / source).resolve() == DASHBOARD and target.startswith(provider["options"]["path"])
        for source, target, *_ in mounts
    )


async def test_load_script_drives_mixed_traffic(start_proxy: ProxyFactory) -> None:
    proxy = await start_proxy(yaml.safe_load((COMPOSE / "taxmeter.yaml").read_text()))
    argv = [sys.executable, str(COMPOSE / "load.py"), "--url", proxy.url, "--requests", "80"]
    argv += ["--concurrency", "4", "--think-ms", "0", "--duration", "60"]
    run = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await run.communicate()
    assert run.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[-1].split() == ["80", "requests"]
    kinds = {tuple(line.split()[1:]) for line in lines[:-1]}
    assert ("clean", "json", "200") in kinds
    assert ("clean", "stream", "200") in kinds
    assert any(kind[0] == "injection" and kind[2] == "400" for kind in kinds)
    # What the proxy recorded: streamed and not, blocks and redactions.
    assert proxy.value("taxmeter_filter_decisions_total", filter="denylist", stage="input",
                       mode="enforce", action="block") > 0  # fmt: skip
    redacted = sum(
        proxy.value("taxmeter_filter_decisions_total", filter=f, stage=s, mode="enforce",
                    action="redact")
        for f, s in (("pii", "input"), ("pii", "output"), ("pii_stream", "stream"))
    )  # fmt: skip
    assert redacted > 0
    assert proxy.value("taxmeter_time_to_first_token_seconds_count",
                       route="chat_completions", variant="default") > 0  # fmt: skip
