"""Every async test runs on uvloop, the loop taxmeter runs on in production.

The real servers on loopback (tests/loopback.py) are fixtures of every folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import pytest
import uvloop

from tests.in_memory_spans import in_memory
from tests.loopback import echo_server, model, raw_server, start_proxy
from tests.otlp_receiver import traced

__all__ = ["echo_server", "in_memory", "model", "raw_server", "start_proxy", "traced"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], object]]:
    return {"uvloop": uvloop.new_event_loop}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under mutmut's stats run, a failure does not stop the run.

    That run traces every call to learn which tests reach which function; the
    tracer slows the proxy several times over, so a test that bounds what the
    proxy costs (a sub-millisecond tax) can fail there and only there. The
    untraced clean run mutmut makes next still has to pass whole.
    """
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    traced_only = pytest.mark.xfail(reason="slowed by mutmut's tracer", strict=False)
    for item in items:
        item.add_marker(traced_only)
