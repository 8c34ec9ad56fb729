"""budget_ms, cost_per_call_usd and cpu_usd_per_core_hour; the config's sha256."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from proxy.config.schema import ConfigError, load_config, parse_config


@pytest.mark.parametrize(
    ("raw", "key", "fragment"),
    [
        ({"filters": [{"type": "pii", "budget_ms": 0}]}, "filters[0].budget_ms", "> 0"),
        ({"filters": [{"type": "pii", "budget_ms": -5}]}, "filters[0].budget_ms", "> 0"),
        ({"filters": [{"type": "pii", "budget_ms": "10ms"}]}, "filters[0].budget_ms", "number"),
        ({"filters": [{"type": "pii", "budget_ms": float("inf")}]},
         "filters[0].budget_ms", "finite"),
        ({"filters": [{"type": "pii", "budget_ms": True}]}, "filters[0].budget_ms", "number"),
        ({"filters": [{"type": "pii", "cost_per_call_usd": -0.01}]},
         "filters[0].cost_per_call_usd", ">= 0"),
        ({"filters": [{"type": "pii", "cost_per_call_usd": "$0.01"}]},
         "filters[0].cost_per_call_usd", "number"),
        ({"filters": [{"type": "pii", "cost_per_call_usd": float("nan")}]},
         "filters[0].cost_per_call_usd", "finite"),
        ({"filters": [{"type": "pii"}, {"name": "b", "type": "pii", "cost_per_call_usd": []}]},
         "filters[1].cost_per_call_usd", "number"),
        ({"cpu_usd_per_core_hour": -1}, "cpu_usd_per_core_hour", ">= 0"),
        ({"cpu_usd_per_core_hour": "0.04"}, "cpu_usd_per_core_hour", "number"),
        ({"cpu_usd_per_core_hour": float("inf")}, "cpu_usd_per_core_hour", "finite"),
    ],
)  # fmt: skip
def test_a_bad_budget_or_price_names_the_key(raw: Any, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert fragment in str(caught.value)


def test_budgets_and_prices_are_optional_and_null_is_none() -> None:
    config = parse_config({
        "filters": [
            {"name": "a", "type": "pii", "budget_ms": 12.5, "cost_per_call_usd": 0.0004},
            {"name": "b", "type": "pii", "budget_ms": None, "cost_per_call_usd": None},
            {"name": "c", "type": "pii", "cost_per_call_usd": 0},
        ],
        "cpu_usd_per_core_hour": 0.05,
    })  # fmt: skip
    a, b, c = config.filters
    assert (a.budget_ms, a.cost_per_call_usd) == (12.5, 0.0004)
    assert (b.budget_ms, b.cost_per_call_usd) == (None, 0.0)
    assert (c.budget_ms, c.cost_per_call_usd) == (None, 0.0)
    assert config.cpu_usd_per_core_hour == 0.05
    assert parse_config({"cpu_usd_per_core_hour": None}).cpu_usd_per_core_hour == 0.0
    assert parse_config({}).cpu_usd_per_core_hour == 0.0


def test_the_sha256_is_of_the_bytes_loaded(tmp_path: Path) -> None:
    path = tmp_path / "taxmeter.yaml"
    path.write_bytes(b"filters:\n  - {name: pii, type: pii}\n")
    first = load_config(path)
    assert first.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # Any byte counts, a comment too: the hash names the file as written.
    path.write_bytes(path.read_bytes() + b"# reviewed\n")
    second = load_config(path)
    assert second.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != first.sha256
    assert second.filters == first.filters

    default = resources.files("proxy.config").joinpath("default_config.yaml").read_bytes()
    assert load_config(None).sha256 == hashlib.sha256(default).hexdigest()
    assert parse_config({}).sha256 == "none"  # built in code, not loaded


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "taxmeter.yaml"
    path.write_bytes(b"filters: []\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
