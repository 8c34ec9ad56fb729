"""A fresh `taxmeter serve` process, and its peak resident memory.

A test's own peak RSS (``ru_maxrss``) only ever rises, so after an earlier
heavy test in the same run it cannot show a new peak: memory bounds are read
from a process of their own, started for the test (``VmHWM``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path


@contextlib.asynccontextmanager
async def fresh_serve(upstream: str, *args: str) -> AsyncIterator[tuple[int, str]]:
    """`taxmeter serve` in front of ``upstream`` (more flags in ``args``): its pid and URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "serve", "--upstream", upstream,
        "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        "--log-level", "critical", *args,
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    url = None
    while url is None:
        line = (await process.stdout.readline()).decode()
        assert line, "serve exited before it was listening"
        found = re.match(r"taxmeter: proxy\s+(http://127\.0\.0\.1:\d+)", line)
        url = found.group(1) if found else None
    try:
        yield process.pid, url
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory so far (``VmHWM`` in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1)) * 1024
