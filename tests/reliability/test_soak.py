"""A short soak: the same mixed traffic with faults as bench/soak.py, for 20 seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_leaves_memory_descriptors_and_tasks_flat() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.33", "--json"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    assert report["flat"]
    assert report["requests"] > 100
    # Every fault kind was sent, and the proxy counted each kind of outcome.
    assert {"ok", "blocked", "upstream_error", "timeout", "client_error"} <= set(report["outcomes"])
    assert report["outcomes"].get("client_disconnect", 0) > 0
