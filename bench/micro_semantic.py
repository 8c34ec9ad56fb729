"""semantic_guard in the microbenchmarks: its latency per prompt, one prompt at a time.

The filter as the proxy runs it (its own worker thread, its micro-batching
window) on the prompts of the packaged dataset, each ``check()`` awaited
before the next starts, so no two share a forward pass: what one prompt
waits on a quiet proxy. Needs the ``ml`` extra; without it the row is
skipped with the reason.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from importlib import resources
from typing import Any

import orjson

from filters.base import FilterContext

WARM_UP = 8


def dataset_prompts() -> list[str]:
    text = resources.files("proxy").joinpath("datasets/prompts.jsonl").read_text("utf-8")
    return [str(orjson.loads(line)["prompt"]) for line in text.splitlines() if line.strip()]


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def _timed(guard: Any, prompts: list[str]) -> list[float]:
    for text in prompts[:WARM_UP]:
        await guard.check(FilterContext("input", text, None, "chat_completions", "req-bench"))
    took = []
    for text in prompts:
        ctx = FilterContext("input", text, None, "chat_completions", "req-bench")
        started = time.perf_counter_ns()
        await guard.check(ctx)
        took.append((time.perf_counter_ns() - started) / 1e6)
    await guard.aclose()
    return sorted(took)


def measure(prompts: int | None = None) -> tuple[dict[str, float] | None, str]:
    """({"p50_ms", "p99_ms", "prompts"}, a note), or (None, why it was not measured)."""
    try:
        from filters.semantic_guard import SemanticGuard

        guard = SemanticGuard()
    except (ImportError, ValueError) as exc:
        return None, f"semantic_guard: not measured ({exc})"
    texts = dataset_prompts()[:prompts]
    took = asyncio.run(_timed(guard, texts))
    figures = {
        "p50_ms": statistics.median(took),
        "p99_ms": _percentile(took, 0.99),
        "prompts": float(len(took)),
    }
    note = (f"semantic_guard: {len(took)} prompts of the packaged dataset, one at a time "
            "(its batching window included)")  # fmt: skip
    return figures, note
