"""deploy/prometheus: promtool checks the config and rules and runs the rules' unit tests."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import PROMETHEUS, RULE_FILES, alert_rules
from tests.deploy.promtool import prometheus_binary

RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_binary("promtool"), *args], capture_output=True, text=True, check=False
    )


def test_rules_pass_promtool_check() -> None:
    assert RULE_FILES
    checked = _promtool("check", "rules", *map(str, RULE_FILES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_scrape_config_passes_promtool_check() -> None:
    checked = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    tested = _promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    tests = "\n".join(path.read_text() for path in RULE_TESTS)
    for rule in alert_rules():
        firing = re.search(rf"alertname: {rule['alert']}\n\s+exp_alerts:\n\s+- exp_labels", tests)
        assert firing, f"{rule['alert']}: no promtool test where it fires"


def test_a_broken_rule_fails_the_check(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - record: a:b\n        expr: sum(\n")
    assert _promtool("check", "rules", str(broken)).returncode != 0
