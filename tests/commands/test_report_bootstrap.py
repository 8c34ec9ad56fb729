"""The numpy bootstrap against the textbook one, and numpy kept out of ``serve``.

The textbook bootstrap is written here with numpy directly (resample with
replacement, sort, take the statistic), not with the report's code, and
compared with :mod:`proxy.commands.report.bootstrap` on fixed data.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml
from aiohttp.test_utils import TestServer

from proxy.commands.report.bootstrap import (
    BULK_SKEW_LIMIT,
    EXACT_MEAN_LIMIT,
    bootstrap,
    difference_ci,
    proportion_ci,
    resampled_means,
)
from proxy.commands.report.stats import QUANTILES, STATISTICS


def textbook(values: np.ndarray[Any, Any], resamples: int, seed: int) -> dict[str, Any]:
    gen = np.random.default_rng(seed)
    rows = np.sort(values[gen.integers(0, len(values), (resamples, len(values)))], axis=1)
    out = {name: np.percentile(rows, q * 100, axis=1) for name, q in QUANTILES.items()}
    out["mean"] = rows.mean(axis=1)
    return out


def latencies(n: int, seed: int, shift: float = 0.0) -> np.ndarray[Any, Any]:
    """Heavy-tailed, with a few timeouts: what a latency tax looks like."""
    gen = np.random.default_rng(seed)
    values = shift + gen.lognormal(np.log(0.0004), 1.0, n)
    values[gen.integers(0, n, 3)] = 5.0
    return values


@pytest.mark.parametrize("statistic", STATISTICS)
def test_intervals_match_the_textbook_bootstrap_on_fixed_data(statistic: str) -> None:
    """A shift of 0.2 ms over 4,000 requests a variant (the mean's resamples take
    the shortcut beyond EXACT_MEAN_LIMIT): each bound within a fifth of the
    interval's spread of the textbook's, which is about three times the noise
    of two independent 4,000-resample estimates."""
    assert EXACT_MEAN_LIMIT < 4000
    variant, baseline = latencies(4000, 1, shift=0.0002), latencies(4000, 2)
    resamples = 4000
    rng = random.Random(3)
    ours = difference_ci(
        bootstrap(variant.tolist(), resamples, rng),
        bootstrap(baseline.tolist(), resamples, rng),
        statistic,
    )
    theirs = difference_ci(
        textbook(variant, resamples, 4), textbook(baseline, resamples, 5), statistic
    )
    spread = (theirs[1] - theirs[0]) / 3.92  # the resampled difference's standard deviation
    assert spread > 0
    for mine, reference in zip(ours, theirs, strict=True):
        assert abs(mine - reference) <= 0.2 * spread, (ours, theirs)


@pytest.mark.parametrize("seed", [6, 7])
def test_the_means_shortcut_draws_what_every_draw_draws(seed: int) -> None:
    """Beyond EXACT_MEAN_LIMIT the tails are drawn exactly and the bulk from its
    normal limit: on 10,000 heavy-tailed figures with timeouts among them, the
    two distributions of resampled means coincide (two-sample KS distance)."""
    values = latencies(10_000, seed)
    ordered = np.sort(values)
    tail = len(values) // 100
    while True:  # the shortcut applies to these figures (else both would be the same code)
        bulk = ordered[tail : len(values) - tail]
        centred = bulk - bulk.mean()
        skew = abs(np.mean(centred**3)) / np.mean(centred**2) ** 1.5 / np.sqrt(len(bulk))
        if skew <= BULK_SKEW_LIMIT:
            break
        tail *= 2
    assert 4 * tail <= len(values)
    draws = 5000
    fast = np.sort(resampled_means(values.tolist(), draws, random.Random(seed)))
    gen = np.random.default_rng(seed)
    slow = np.sort(
        np.concatenate([
            values[gen.integers(0, len(values), (500, len(values)))].mean(axis=1)
            for _ in range(draws // 500)
        ])
    )  # fmt: skip
    cuts = np.concatenate([fast, slow])
    distance = np.max(np.abs(
        np.searchsorted(fast, cuts, "right") / draws - np.searchsorted(slow, cuts, "right") / draws
    ))  # fmt: skip
    assert distance < 0.035, distance  # KS at 5000 + 5000 draws: p = 0.001 at about 0.039


def test_a_seed_repeats_the_intervals_and_another_moves_them() -> None:
    values = latencies(3000, 8).tolist()
    first = bootstrap(values, 500, random.Random(1))
    again = bootstrap(values, 500, random.Random(1))
    other = bootstrap(values, 500, random.Random(2))
    for name in STATISTICS:
        assert np.array_equal(first[name], again[name])
        assert not np.array_equal(first[name], other[name])


def test_proportion_interval_holds_the_difference_of_shares() -> None:
    lo, hi = proportion_ci((300, 1000), (200, 1000), 4000, random.Random(9))
    # 0.1 apart; each share's standard error about 0.014, the difference's about 0.02.
    assert 0.055 < lo < 0.1 < hi < 0.145, (lo, hi)
    assert proportion_ci((0, 50), (0, 50), 100, random.Random(1)) == [0.0, 0.0]


def test_the_cli_and_the_proxy_modules_do_not_import_numpy() -> None:
    code = (
        "import sys, proxy.cli, proxy.server.serve, proxy.exchange.handler, "
        "proxy.commands.report.command; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
async def test_a_serving_proxy_has_not_loaded_numpy(model: TestServer, tmp_path: Path) -> None:
    """``taxmeter serve`` with the default chain, after a judged request and a
    /stats read: numpy's shared libraries are not mapped into the process."""
    config = tmp_path / "config.yaml"
    default = resources.files("proxy.config").joinpath("default_config.yaml").read_text("utf-8")
    settings = yaml.safe_load(default)
    settings.pop("listen"), settings.pop("metrics_listen")
    assert [f["name"] for f in settings["filters"]] == ["denylist", "pii"]
    settings["upstream"] = {"url": str(model.make_url("")).rstrip("/")}
    config.write_text(yaml.safe_dump(settings))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--config", str(config),
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        urls: dict[str, str] = {}
        async with asyncio.timeout(60):
            while "filters" not in urls:
                line = (await process.stdout.readline()).decode()
                assert line, "serve exited"
                parts = line.removeprefix("taxmeter: ").split()
                if len(parts) >= 2:
                    urls[parts[0]] = parts[1]
        chat = {"model": "m", "messages": [{"role": "user", "content": "mail me at a@b.example"}]}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{urls['proxy']}/v1/chat/completions", json=chat) as r:
                assert r.status == 200, await r.text()
            async with session.get(f"{urls['metrics'].removesuffix('/metrics')}/stats") as r:
                assert r.status == 200
        maps = await asyncio.to_thread(Path(f"/proc/{process.pid}/maps").read_text)
        assert "aiohttp" in maps  # the check can see the proxy's own libraries
        assert "numpy" not in maps
    finally:
        process.terminate()
        await process.wait()
