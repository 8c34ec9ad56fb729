"""Shared test helpers for filter tests (a module, so tests can import it)."""

from __future__ import annotations

from typing import Any

from filters.base import FilterContext, Stage


def make_ctx(
    text: str,
    stage: Stage = "input",
    *,
    body: Any = None,
    route: str = "chat_completions",
    request_id: str = "req-test",
    variant: str = "default",
) -> FilterContext:
    """A FilterContext for ``text`` with defaults for everything a filter rarely reads."""
    return FilterContext(
        stage=stage, text=text, body=body, route=route, request_id=request_id, variant=variant
    )
