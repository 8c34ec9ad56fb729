"""The deploy/ tree, read as the tests need it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
COMPOSE = DEPLOY / "compose"
DASHBOARD = GRAFANA / "taxmeter-latency-tax.json"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every object in deploy/k8s, as (file name, object)."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                found.append((path.name, document))
    return found


def k8s_object(kind: str) -> dict[str, Any]:
    (only,) = [doc for _, doc in k8s_documents() if doc["kind"] == kind]
    return only


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in RULE_FILES:
        groups.extend(yaml.safe_load(path.read_text())["groups"])
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "record" in rule]
