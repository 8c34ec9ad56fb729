"""``ablation: {weight: W}``: a without_<filter> variant per enforcing filter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.config.schema import ConfigError, VariantSpec, parse_config
from proxy.judge.build import build_chains, build_filters

FILTERS = [
    {"name": "slow", "type": "synthetic", "stages": ["input"], "params": {"wall_ms": 1}},
    {"name": "pii", "type": "pii"},
    {"name": "watch", "type": "denylist", "mode": "observe", "params": {"patterns": ["x"]}},
    {"name": "idle", "type": "pii", "mode": "off"},
]


def test_one_variant_per_enforcing_filter_after_the_configured_ones() -> None:
    config = parse_config(
        {
            "filters": FILTERS,
            "variants": {"all": {"weight": 80}, "no_pii": {"weight": 5, "disable": ["pii"]}},
            "ablation": {"weight": 7.5},
        }
    )
    assert config.variants == (
        VariantSpec("all", 80.0),
        VariantSpec("no_pii", 5.0, frozenset({"pii"})),
        VariantSpec("without_slow", 7.5, frozenset({"slow"}), ablates="slow"),
        VariantSpec("without_pii", 7.5, frozenset({"pii"}), ablates="pii"),
    )
    # Each is a real chain: the one filter gone, every other as configured.
    chains = build_chains(config, build_filters(config))
    names = {v: sorted(b.name for b in chains[v].input) for v in ("all", "without_slow")}
    assert names == {"all": ["pii", "slow"], "without_slow": ["pii"]}


def test_without_ablation_or_with_null_nothing_is_added() -> None:
    for raw in ({"filters": FILTERS}, {"filters": FILTERS, "ablation": None}):
        assert [v.name for v in parse_config(raw).variants] == ["default"]


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"ablation": {"weight": -1}}, "ablation.weight", ">= 0"),
        ({"ablation": {"weight": "lots"}}, "ablation.weight", "expected a number"),
        ({"ablation": {"weight": True}}, "ablation.weight", "expected a number"),
        ({"ablation": {}}, "ablation.weight", "required"),
        ({"ablation": {"weight": 1, "filters": ["pii"]}}, "ablation.filters", "unknown key"),
        ({"ablation": 5}, "ablation", "expected a mapping"),
        ({"ablation": {"weight": 1}, "variants": {"a": {}, "without_pii": {"weight": 1}}},
         "variants.without_pii", "ablation adds a variant of this name"),
    ],
)  # fmt: skip
def test_bad_ablation_names_the_key(raw: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"filters": FILTERS, **raw})
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert fragment in str(caught.value)


def test_check_config_lists_the_added_variants(tmp_path: Path) -> None:
    path = tmp_path / "ablation.yaml"
    path.write_text("filters:\n  - {name: pii, type: pii}\nablation: {weight: 10}\n")
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "variants: default, without_pii" in done.stdout

    path.write_text("filters:\n  - {name: pii, type: pii}\nablation: {weight: -2}\n")
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "ablation.weight: expected a number >= 0" in done.stderr
