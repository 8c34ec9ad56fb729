"""A start with semantic_guard says what it waits for: check-config and serve, as run by a user.

Even from the ONNX cache (the session's, shared with the other semantic_guard
tests), building the filter takes seconds: the session, the tokenizer and
the example sets embedded, well past the half second after which it speaks.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestServer

from tests.filters.semantic_helpers import require_ml, session_onnx_cache
from tests.server.test_serve_cli import read_announcement, start_serve

__all__ = ["session_onnx_cache"]  # a fixture

WHAT = "filter 'sg' (semantic_guard: the all-MiniLM-L6-v2 sentence model)"
CONFIG = "filters:\n  - {name: sg, type: semantic_guard}\n"


def assert_said_loading(stderr: str) -> None:
    lines = stderr.splitlines()
    assert f"taxmeter: loading {WHAT}..." in lines, stderr
    done = [n for n, line in enumerate(lines) if line.startswith(f"taxmeter: {WHAT} loaded in ")]
    assert len(done) == 1, stderr
    assert lines.index(f"taxmeter: loading {WHAT}...") < done[0]
    assert re.fullmatch(r".* loaded in \d+\.\d s", lines[done[0]])


def test_check_config_says_semantic_guard_is_loading(
    tmp_path: Path, session_onnx_cache: Path
) -> None:
    require_ml()
    config = tmp_path / "sg.yaml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", str(config)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{config}: ok (sg; variants: default)\n"
    assert_said_loading(done.stderr)


async def test_serve_says_semantic_guard_is_loading_before_its_banner(
    tmp_path: Path, model: TestServer, session_onnx_cache: Path
) -> None:
    require_ml()
    config = tmp_path / "sg.yaml"
    config.write_text(CONFIG)
    upstream = str(model.make_url("")).rstrip("/")
    process = await start_serve("--config", str(config), "--upstream", upstream)
    try:
        where = await asyncio.wait_for(read_announcement(process), timeout=300)
        assert where["filters"] == "sg (enforce)"
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=30)
    assert process.stderr is not None
    stderr = (await process.stderr.read()).decode()
    assert_said_loading(stderr)  # once: serve builds its filters once
