"""A filter slow to build says so, and how long it took; the quick ones say nothing."""

from __future__ import annotations

import re
import threading

import pytest

from proxy.config.schema import Config, ConfigError, load_config, parse_config
from proxy.judge.build import build_filters

SLOW = "tests.judge.sample_filters:WaitsToBeNoticed"
WHAT = f"filter 'model' ({SLOW}: a model it pretends to load)"


def slow_config(noticed: threading.Event, fail: bool = False) -> Config:
    spec = {"name": "model", "type": SLOW, "params": {"noticed": noticed, "fail": fail}}
    return parse_config({"filters": [{"type": "pii"}, spec]})


def test_a_slow_build_says_what_it_loads_then_how_long_it_took() -> None:
    noticed = threading.Event()
    lines: list[str] = []

    def notify(line: str) -> None:
        lines.append(line)
        noticed.set()  # the filter's constructor returns only now

    built = build_filters(slow_config(noticed), notify)
    assert set(built) == {"pii", "model"}
    assert lines[0] == f"loading {WHAT}..."
    assert re.fullmatch(re.escape(WHAT) + r" loaded in \d+\.\d s", lines[1]), lines
    assert len(lines) == 2  # pii built at once: not a word about it


def test_a_slow_build_that_fails_leaves_the_rest_to_its_error() -> None:
    noticed = threading.Event()
    lines: list[str] = []

    def notify(line: str) -> None:
        lines.append(line)
        noticed.set()

    with pytest.raises(ConfigError, match="the model is broken"):
        build_filters(slow_config(noticed, fail=True), notify)
    assert lines == [f"loading {WHAT}..."]


def test_the_default_filters_build_without_a_word() -> None:
    lines: list[str] = []
    build_filters(load_config(None), lines.append)
    assert lines == []
