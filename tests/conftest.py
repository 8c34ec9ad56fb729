"""Every async test runs on uvloop, the loop taxmeter runs on in production.

The real servers on loopback (tests/loopback.py) are fixtures of every folder.
"""

from __future__ import annotations

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
