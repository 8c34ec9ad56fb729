"""deploy/k8s: strict schema validation, and the pieces fit together."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from proxy.server.sites import SHUTDOWN_GRACE_S
from tests.deploy.manifests import K8S, k8s_documents, k8s_object

# The oldest Kubernetes still commonly run, and the newest the validator knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
SERVICE_MONITOR_SCHEMA = json.loads(
    (Path(__file__).parent / "schemas" / "servicemonitor-v1.json").read_text()
)


def _validate(document: dict[str, Any], version: str) -> None:
    if document["apiVersion"].startswith("monitoring.coreos.com/"):
        # A CRD: kubernetes-validate knows only the core kinds.
        jsonschema.validate(document, SERVICE_MONITOR_SCHEMA)
    else:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("name", "document"), k8s_documents(), ids=lambda v: str(v)[:40])
def test_manifest_is_valid_strictly(name: str, document: dict[str, Any], version: str) -> None:
    _validate(document, version)


def test_every_expected_kind_is_there() -> None:
    kinds = sorted(doc["kind"] for _, doc in k8s_documents())
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceMonitor"]


@pytest.mark.parametrize(
    "document",
    [
        {**k8s_object("Service"), "spec": {**k8s_object("Service")["spec"], "prots": []}},
        {**k8s_object("ServiceMonitor"), "spec": {"selector": {}, "endpoint": []}},
        {
            **k8s_object("ServiceMonitor"),
            "spec": {"selector": {}, "endpoints": [{"interval": "15 s"}]},
        },
    ],
    ids=["service-typo", "servicemonitor-typo", "servicemonitor-bad-duration"],
)
def test_a_misspelt_field_fails_validation(document: dict[str, Any]) -> None:
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        _validate(document, K8S_VERSIONS[-1])


def _containers() -> dict[str, dict[str, Any]]:
    spec = k8s_object("Deployment")["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def _port_names(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_service_targets_taxmeter_not_the_model_server() -> None:
    service = k8s_object("Service")
    pod_labels = k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    taxmeter_ports = _port_names(_containers()["taxmeter"])
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= taxmeter_ports.keys()
    assert 8000 not in {p.get("targetPort") for p in service["spec"]["ports"]}


def test_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    taxmeter = _containers()["taxmeter"]
    assert taxmeter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert taxmeter["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert _port_names(taxmeter)["metrics"] == 9464
    for container in _containers().values():
        assert container["resources"]["requests"], container["name"]
        assert container["resources"]["limits"], container["name"]


def test_grace_period_covers_prestop_and_the_drain() -> None:
    pod = k8s_object("Deployment")["spec"]["template"]["spec"]
    taxmeter_pre_stop = int(_containers()["taxmeter"]["lifecycle"]["preStop"]["exec"]["command"][1])
    model_pre_stop = int(_containers()["vllm"]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] >= taxmeter_pre_stop + SHUTDOWN_GRACE_S
    # The model server keeps serving until taxmeter has drained its streams.
    assert model_pre_stop >= taxmeter_pre_stop + SHUTDOWN_GRACE_S


def test_prometheus_finds_the_metrics_port() -> None:
    annotations = k8s_object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    metrics_port = _port_names(_containers()["taxmeter"])["metrics"]
    assert int(annotations["prometheus.io/port"]) == metrics_port
    monitor, service = k8s_object("ServiceMonitor"), k8s_object("Service")
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports


def test_configmap_config_passes_check_config(tmp_path: Path) -> None:
    configmap = k8s_object("ConfigMap")
    mount = _containers()["taxmeter"]["volumeMounts"][0]
    assert mount["name"] == "taxmeter-config"
    env = {e["name"]: e["value"] for e in _containers()["taxmeter"]["env"]}
    assert env["TAXMETER_CONFIG"] == f"{mount['mountPath']}/taxmeter.yaml"
    config_file = tmp_path / "taxmeter.yaml"
    config_file.write_text(configmap["data"]["taxmeter.yaml"])
    checked = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", str(config_file)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    upstream = yaml.safe_load(configmap["data"]["taxmeter.yaml"])["upstream"]["url"]
    assert upstream.endswith(f":{_port_names(_containers()['vllm'])['model']}")


def test_no_stray_files() -> None:
    assert {p.suffix for p in K8S.iterdir()} == {".yaml"}
