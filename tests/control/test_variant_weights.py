"""Unequal weights: a seeded assigner's arms follow them, by a chi-square bound.

50/50 and zero weights cannot tell an assigner that reads the weights from one
that splits evenly; 90/10 and 70/20/10 can. The assigner is seeded, so each
test draws the same sequence every run: the bound is checked, not sampled.
"""

from __future__ import annotations

from collections import Counter

import pytest
from aiohttp.test_utils import make_mocked_request

from proxy.config.schema import parse_config
from proxy.control.variants import Assigner

DRAWS = 20_000
# Chi-square critical values at p = 0.001 by degrees of freedom (arms - 1),
# from the standard table: 1 -> 10.828, 2 -> 13.816, 3 -> 16.266.
CRITICAL_P001 = {1: 10.828, 2: 13.816, 3: 16.266}
WEIGHTS = [
    pytest.param({"a": 90, "b": 10}, id="90/10"),
    pytest.param({"a": 70, "b": 20, "c": 10}, id="70/20/10"),
    pytest.param({"a": 1, "b": 3, "c": 0, "d": 96}, id="1/3/0/96"),
]


def chi_square(counts: Counter[str], weights: dict[str, int]) -> float:
    """Pearson's statistic of ``counts`` against the share each weight asks for."""
    total_weight = sum(weights.values())
    draws = sum(counts.values())
    statistic = 0.0
    for name, weight in weights.items():
        if weight == 0:
            continue
        expected = draws * weight / total_weight
        statistic += (counts[name] - expected) ** 2 / expected
    return statistic


def assigner(weights: dict[str, int], seed: int = 21) -> Assigner:
    config = parse_config(
        {
            "variants": {name: {"weight": w} for name, w in weights.items()},
            "assignment": {"sticky": "header:x-user", "salt_env": "SALT"},
        }
    )
    return Assigner(config, {"SALT": "a fixed salt"}, seed=seed)


def check_follows(counts: Counter[str], weights: dict[str, int]) -> None:
    assert counts.total() == DRAWS
    for name, weight in weights.items():
        if weight == 0:
            assert counts[name] == 0, counts  # a zero weight gets nothing, ever
    live = sum(1 for w in weights.values() if w > 0)
    statistic = chi_square(counts, weights)
    assert statistic < CRITICAL_P001[live - 1], (statistic, counts)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_random_assignment_follows_unequal_weights(weights: dict[str, int]) -> None:
    chooser = assigner(weights)
    request = make_mocked_request("POST", "/v1/chat/completions")  # no sticky key: at random
    counts = Counter(chooser.assign(request) for _ in range(DRAWS))
    check_follows(counts, weights)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_sticky_keys_spread_by_unequal_weights(weights: dict[str, int]) -> None:
    chooser = assigner(weights)
    # What assign does with a request's key: the keyed hash's point, picked by weight.
    counts = Counter(chooser.pick(chooser.point_of(f"user-{i}")) for i in range(DRAWS))
    check_follows(counts, weights)


def test_an_even_split_is_far_outside_the_bound_of_90_10() -> None:
    """The bound can fail: 50/50 counts against 90/10 weights are beyond it by far."""
    even = Counter({"a": DRAWS // 2, "b": DRAWS // 2})
    assert chi_square(even, {"a": 90, "b": 10}) > 100 * CRITICAL_P001[1]
